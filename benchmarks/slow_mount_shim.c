/*
 * slow_mount_shim.c: an LD_PRELOAD library that makes mount(2) slower on purpose.
 *
 * Each mount() sleeps LXCEXP_SHIM_DELAY_US microseconds (default 250) before the real
 * call. Of the mounts liblxc makes for a VE start, in processes forked from lxc-start that
 * keep the preload, about four go through libc's mount() (liblxc 5.0.2, measured: 1000 us
 * made a start about 4 ms slower): the default adds about 1 ms per start. It is the
 * "made slower on purpose" build for calibrating verdicts:
 *     --ve-lxc slow=system+preload:/path/slow_mount_shim.so
 *
 * With LXCEXP_SHIM_SPIN=1 the delay is spent on the CPU (a busy wait) instead of in
 * nanosleep(): a sleep gives the CPU away and waits for the scheduler to hand it back,
 * which on a busy host costs far more than the delay asked for (5 us of sleep per mount
 * made 200-VE starts about 14% slower here), so only a spin adds what it says.
 *
 * Build: benchmarks/build_shim.sh [OUT.so]   (gcc -shared -fPIC ... -ldl)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <time.h>

typedef int (*mount_fn)(const char *, const char *, const char *, unsigned long, const void *);

static long delay_us(void)
{
	const char *text = getenv("LXCEXP_SHIM_DELAY_US");
	long value = text ? strtol(text, NULL, 10) : 250;
	return value < 0 ? 0 : value;
}

static int spin_wanted(void)
{
	const char *text = getenv("LXCEXP_SHIM_SPIN");
	return text && text[0] == '1';
}

static void spin_for(long us)
{
	struct timespec now, until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_nsec += (us % 1000000) * 1000;
	until.tv_sec += us / 1000000 + until.tv_nsec / 1000000000;
	until.tv_nsec %= 1000000000;
	do
		clock_gettime(CLOCK_MONOTONIC, &now);
	while (now.tv_sec < until.tv_sec || (now.tv_sec == until.tv_sec && now.tv_nsec < until.tv_nsec));
}

int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data)
{
	static mount_fn real_mount;
	long us = delay_us();
	struct timespec pause = { us / 1000000, (us % 1000000) * 1000 };

	if (!real_mount)
		real_mount = (mount_fn)dlsym(RTLD_NEXT, "mount");
	if (us && spin_wanted())
		spin_for(us);
	else
		while (us && nanosleep(&pause, &pause) != 0)
			;
	return real_mount(source, target, fstype, flags, data);
}
