# Denies an image that failed one of its structure tests. `unsupported` tests do not deny.
package rebake.policy.structure_tests_pass

deny contains msg if {
	some test in input.structure
	test.status == "failed"
	msg := sprintf("structure test %s %s failed: %s", [test.kind, test.name, test.message])
}
