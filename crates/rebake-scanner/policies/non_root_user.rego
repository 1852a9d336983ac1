# Denies an image whose config runs its process as root: USER empty (the runtime's
# default is root), `root`, `0`, or `root:<group>` / `0:<group>`. Turned off by
# `input.settings.allow_root`.
package rebake.policy.non_root_user

default user := ""

user := input.config.user if is_string(input.config.user)

root_user(u) if u == ""

root_user(u) if u == "root"

root_user(u) if u == "0"

root_user(u) if startswith(u, "0:")

root_user(u) if startswith(u, "root:")

deny contains msg if {
	not input.settings.allow_root
	root_user(user)
	user == ""
	msg := "image runs as root: the config sets no USER (the default is root); set a non-root USER"
}

deny contains msg if {
	not input.settings.allow_root
	root_user(user)
	user != ""
	msg := sprintf("image runs as root: the config sets USER %s; set a non-root USER", [user])
}
