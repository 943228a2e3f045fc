# Behavioural posture probe, run inside a container with `sh -c` (no TTY). Uses only what every
# image here has: sh, coreutils, grep, perl-base. Prints `key=value` lines; never prints the
# environment. Every attempt cleans up after itself.
for k in Uid Gid CapEff CapBnd NoNewPrivs Seccomp; do
  v=$(grep "^$k:" /proc/1/status | cut -f2-)
  echo "status.$k=$v"
done
echo "uid_map=$(tr -s ' \n' ' ;' </proc/1/uid_map)"
echo "gid_map=$(tr -s ' \n' ' ;' </proc/1/gid_map)"
echo "exec_uid=$(id -u)"
echo "root_mount=$(awk '$5 == "/" { print $6 }' /proc/1/mountinfo | tail -n 1)"
if err=$(touch /.hydra-posture-probe 2>&1); then
  rm -f /.hydra-posture-probe; echo "rootfs_write=ok"
else
  echo "rootfs_write=denied: $err"
fi
d=/dev/shm; [ -w "$d" ] || d=/tmp
if ! command -v perl >/dev/null 2>&1; then
  echo "raw_socket=skip: no perl in the image"
else
  echo "raw_socket=$(perl -e 'if (socket(my $s, 2, 3, 1)) { print "ok" } else { print "denied: $!" }' 2>&1)"
fi
if f=$(mktemp -p "$d" 2>/dev/null); then
  if err=$(chown 4242:4242 "$f" 2>&1); then echo "chown=ok"; else echo "chown=denied: $err"; fi
  rm -f "$f"
else
  echo "chown=skip: no writable directory for a scratch file"
fi
case $(uname -m) in x86_64) nr=165; un=166 ;; aarch64) nr=40; un=39 ;; *) nr= ;; esac
if [ -z "$nr" ]; then
  echo "mount=skip: mount(2) number unknown for $(uname -m)"
elif ! command -v perl >/dev/null 2>&1; then
  echo "mount=skip: no perl in the image"
elif m=$(mktemp -d -p "$d" 2>/dev/null); then
  echo "mount=$(perl -e 'my ($nr, $un, $dir) = @ARGV; my ($src, $fs) = ("none", "tmpfs"); if (syscall($nr + 0, $src, $dir, $fs, 0, 0) == 0) { syscall($un + 0, $dir, 0); print "ok" } else { print "denied: $!" }' "$nr" "$un" "$m" 2>&1)"
  rmdir "$m" 2>/dev/null
else
  echo "mount=skip: no writable directory for a mount point"
fi
case $(uname -m) in x86_64) pt=101 ;; aarch64) pt=117 ;; *) pt= ;; esac
if [ -z "$pt" ]; then
  echo "ptrace=skip: ptrace(2) number unknown for $(uname -m)"
elif ! command -v perl >/dev/null 2>&1; then
  echo "ptrace=skip: no perl in the image"
else
  # PTRACE_ATTACH (16) to a pid that cannot exist: ESRCH (3) when the filter lets ptrace through.
  echo "ptrace=$(perl -e 'syscall($ARGV[0] + 0, 16, 2147483647, 0, 0); print(($! + 0) == 3 ? "ok" : "denied: $!")' "$pt" 2>&1)"
fi
