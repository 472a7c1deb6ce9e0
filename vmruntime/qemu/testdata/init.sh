#!/bin/busybox sh
# Init of the test guest: prints its boot id once, then a counter that
# ticks five times a second. Ticks that go on after a restore without a
# second boot line show that the guest's memory was restored.
/bin/busybox --install -s /bin
mount -t proc proc /proc
echo "vmlet-test boot $(cat /proc/sys/kernel/random/boot_id)"
i=0
while true; do
	i=$((i + 1))
	echo "vmlet-test tick $i"
	sleep 0.2
done
