# Shared by the scripts that need cgroup v2 delegated to an unprivileged user where no systemd
# does it (the rig's L1 runs a cgroup v2 kernel without systemd). Source it from the repository
# root.

# cgroup_delegate USER CONFIG_HOME: as root, gives USER the subtree
# /sys/fs/cgroup/nook-USER.slice as systemd's Delegate=yes would (the directory and its
# cgroup.procs, cgroup.subtree_control and cgroup.threads owned by USER, the cpu, cpuset, io,
# memory and pids controllers available in it), moves the calling shell into a leaf of it owned by
# USER (so that what it starts as USER lives in the subtree, as in a login session), and names it
# as cgroup_parent in CONFIG_HOME/nook/config.toml. Sets CGROUP_DELEGATED to the subtree.
cgroup_delegate() {
    local user=$1 config=$2 c
    [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ] || {
        echo "cgroup_delegate: /sys/fs/cgroup is not cgroup v2 alone" >&2
        return 1
    }
    CGROUP_DELEGATED=/sys/fs/cgroup/nook-$user.slice
    for c in cpu cpuset io memory pids; do
        echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control
    done
    mkdir -p "$CGROUP_DELEGATED/login"
    chown "$user" "$CGROUP_DELEGATED" "$CGROUP_DELEGATED"/cgroup.{procs,subtree_control,threads}
    chown -R "$user" "$CGROUP_DELEGATED/login"
    echo $$ >"$CGROUP_DELEGATED/login/cgroup.procs"
    mkdir -p "$config/nook"
    echo "cgroup_parent = \"$CGROUP_DELEGATED\"" >"$config/nook/config.toml"
    chown -R "$user" "$config"
}
