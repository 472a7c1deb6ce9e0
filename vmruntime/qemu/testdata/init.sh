#!/bin/busybox sh
# Init of the test guest: prints its boot id once, then a counter that
# ticks five times a second. Ticks that go on after a restore without a
# second boot line show that the guest's memory was restored.
/bin/busybox --install -s /bin
mount -t proc proc /proc
echo "vmlet-test boot $(cat /proc/sys/kernel/random/boot_id)"
# vmlet.test.fill=MIB fills that much guest memory with copies of busybox,
# so that a checkpoint has that many non-zero pages to write. /dev/urandom
# is not used because it blocks until the kernel's random pool is ready,
# which under TCG can take minutes.
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	vmlet.test.fill=*)
		while cat /bin/busybox; do :; done | head -c $((${arg#*=} * 1048576)) >/fill
		echo "vmlet-test filled"
		;;
	esac
done
i=0
while true; do
	i=$((i + 1))
	echo "vmlet-test tick $i"
	sleep 0.2
done
