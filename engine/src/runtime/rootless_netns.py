# Removes Podman 4.3's rootless network namespace when it can no longer serve a container start.
# Run as the rootless user inside its user namespace (`podman unshare python3 - RUNTIME_DIR`), so
# nothing in the user's runtime directory is touched as root. Shared by scripts/setup-host.sh and
# the harness.
#
# Podman keeps the namespace mounted at $XDG_RUNTIME_DIR/netns/rootless-netns-<hash> and its state
# in $XDG_RUNTIME_DIR/libpod/tmp/rootless-netns: the directories it bind-mounts into the namespace
# before each container's network setup (the runtime directory itself, under the same path below
# that directory) and the pid of the slirp4netns that connects it. It creates them only together
# with the namespace. A Podman process killed while it created them, or anything that removed that
# directory while the namespace stayed, leaves a namespace Podman still joins, and every container
# start on a network then fails with "failed to mount runtime directory for rootless netns" (which
# podman-compose reports with exit 0). Only a new namespace helps: this unmounts and removes the
# old one, ends the slirp4netns that served it, and removes its state; Podman makes a new one at
# the next start.
#
# It holds Podman's own lock (libpod/tmp/rootless-netns.lock, a POSIX record lock, as Podman takes
# it) while it looks, so a namespace being set up right now is never mistaken for a broken one.
# Prints what it removed; exit 0 also when there was nothing to do.
import fcntl
import glob
import os
import shutil
import signal
import subprocess
import sys
import time

LOCK_WAIT = 30.0


def slirp_pids(namespace, state_dir):
    """The slirp4netns processes serving `namespace`: from its pid file and from their arguments."""
    pids = set()
    try:
        with open(os.path.join(state_dir, "rootless-netns-slirp4netns.pid")) as f:
            pids.add(int(f.read().strip()))
    except (OSError, ValueError):
        pass
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if os.path.basename(args[0]) == b"slirp4netns" and namespace.encode() in args:
            pids.add(int(entry))
    alive = set()
    for pid in pids:
        try:
            with open("/proc/%d/comm" % pid) as f:
                if f.read().strip() == "slirp4netns":
                    alive.add(pid)
        except OSError:
            pass
    return alive


def main():
    runtime_dir = os.path.normpath(sys.argv[1])
    namespaces = glob.glob(os.path.join(runtime_dir, "netns", "rootless-netns-*"))
    if not namespaces:
        return 0
    tmp = os.path.join(runtime_dir, "libpod", "tmp")
    os.makedirs(tmp, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(tmp, "rootless-netns.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if time.monotonic() > deadline:
                print("rootless-netns.lock held for %ds: left as it is" % LOCK_WAIT, file=sys.stderr)
                return 1
            time.sleep(0.2)
    state_dir = os.path.join(tmp, "rootless-netns")
    # What Podman bind-mounts the runtime directory onto before every network setup.
    if os.path.isdir(state_dir + runtime_dir):
        return 0
    for ns in namespaces:
        for pid in slirp_pids(ns, state_dir):
            os.kill(pid, signal.SIGTERM)
        subprocess.run(["umount", ns], stderr=subprocess.DEVNULL, check=False)
        os.remove(ns)
        print("removed the rootless network namespace %s, which had lost its runtime directory" % ns)
    shutil.rmtree(state_dir, ignore_errors=True)
    return 0


sys.exit(main())
