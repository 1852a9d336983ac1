# Denies an image missing one of `input.settings.required_labels`, or carrying it with an
# empty (or whitespace-only) value.
package rebake.policy.required_labels

present(name) if {
	value := input.config.labels[name]
	is_string(value)
	trim_space(value) != ""
}

deny contains msg if {
	some name in input.settings.required_labels
	not present(name)
	msg := sprintf("required label %s is missing or empty", [name])
}
