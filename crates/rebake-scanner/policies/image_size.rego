# Denies an image larger than `input.settings.max_image_size_bytes` (config plus compressed
# layers; for an index, its largest platform).
package rebake.policy.image_size

deny contains msg if {
	max := input.settings.max_image_size_bytes
	is_number(max)
	size := input.image.size_bytes
	size > max
	msg := sprintf("image %s is %d bytes, over the limit of %d bytes", [input.image.name, size, max])
}
