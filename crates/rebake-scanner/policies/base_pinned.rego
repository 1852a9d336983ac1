# Denies an image whose base image is not pinned. "Pinned" is `input.base.pinned`: the
# spec named the base by digest (`name@sha256:...`) or the base is `scratch`. Rebake
# resolves tags to digests at build time, so every build has a base digest; this rule is
# about whether the spec itself fixes it.
package rebake.policy.base_pinned

default base_ref := "(unknown)"

base_ref := input.base.ref if {
	is_string(input.base.ref)
	input.base.ref != ""
}

pinned if input.base.pinned == true

pinned if input.base.ref == "scratch"

deny contains msg if {
	not pinned
	msg := sprintf("base image %s is not pinned by digest (write it as name@sha256:...)", [base_ref])
}
