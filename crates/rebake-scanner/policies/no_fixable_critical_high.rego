# Denies an image with a critical or high vulnerability that has a fix available:
# rebuilding on updated packages would remove it.
package rebake.policy.no_fixable_critical_high

serious := {"critical", "high"}

deny contains msg if {
	some finding in input.findings
	finding.severity in serious
	is_string(finding.fixed_version)
	finding.fixed_version != ""
	msg := sprintf("%s vulnerability %s in %s %s is fixed in %s", [
		finding.severity,
		finding.id,
		finding.package,
		finding.installed_version,
		finding.fixed_version,
	])
}
