"""`make test-hosts`: the project's own install and a real subset of its integration tests,
inside VMs of the hosts users run (Debian 12 and 13: cgroup v2, systemd, AppArmor).

    python -m tests.hosts.run [--release bookworm --release trixie] [--results DIR] [-k EXPR]

For each release, one after the other: the cached image (built once, see vmimage.py),
a VM booted on a throwaway overlay of it, this checkout copied in (tracked and untracked,
not ignored, files: what a fresh clone plus the working tree's changes holds), `make venv`
as the README says, the tests, a 50-VE run for the figures, and everything brought back
into DIR/<release>/: junit.xml, pytest.log, facts.txt, reports/ (results.json, report.html),
serial.log. DIR/summary.json holds the timings. Exit status 1 when any release failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from . import guestconfig, vmimage
from .vm import BOOT_ATTEMPTS, Vm, VmError, kvm_works, registry_forwards, require_tools

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The same path as here: a run over several hosts (--two-hosts) sends its test paths as
# they are on the controller, and each ssh worker runs from its own checkout there.
GUEST_CHECKOUT = REPO
GUEST_RESULTS = "/root/results"
# What CI runs in each VM (within its time under TCG): a run that completes and leaves
# nothing, failures named, SIGTERM while waiting, a takedown of stray processes, and what
# differs by host kind (cgroups, AppArmor, a system-init VE's inner cgroup on v2). The
# report is written by the 50-VE run below.
DEFAULT_SELECTION = (
    "test_ping_suite_completes_every_ve_and_leaves_nothing or test_failures_name_each_ve_and_its_reason"
    " or test_sigterm_from_outside_while_waiting or test_takedown_is_idempotent_and_kills_stray_processes"
    " or test_host_kinds or test_takedown_finds_cgroups_a_ve_made_below_its_own"
    " or test_a_system_init_ve_cannot_raise_the_pids_limit_it_was_given"
    " or test_a_ve_that_eats_memory_meets_the_experiments_oom_killer_not_the_hosts"
    " or test_the_default_memory_limit_is_what_the_host_can_give_less_its_reserve"
    " or test_a_limit_per_ve_ends_the_ves_own_process_and_no_neighbours"
    " or (test_a_build_whose_start_hangs_fails_its_ves_and_the_run_ends and forkstart)"
)
# --wide: also Ctrl-C, the CLI's steps, the engine end to end, cgroup lists, a pids limit,
# crashed workloads, capabilities, and the archived report compared and rendered (which
# fails under TCG: its faulty run kills ve2 after all twelve starts, and twelve starts
# under emulation outlast ve2's second of pings) - about twice as long.
WIDE_SELECTION = DEFAULT_SELECTION + (
    " or test_archived_runs_compare_and_render or test_cli_runs_the_original_steps"
    " or test_ctrl_c_from_a_terminal_while_ves_run"
    " or test_bridge_experiment_end_to_end or test_ves_get_cgroups or test_a_pids_limit_reached_mid_run_is_named"
    " or test_crashed_and_broken_workloads or test_privileged_ves_lose_capabilities"
)
FIGURES_RUN = (
    ".venv/bin/pytest --ve-suite ping --ve-count=50 --ve-pings=5 --ve-ping-interval=0.5"
    " --ve-root=/tmp/lxcexp-hosts-figures --ve-bridge=vehostfig --ve-subnet=10.199.0.0/24"
    f" --ve-report-dir={GUEST_RESULTS}/reports -p no:cacheprovider"
)
FACTS = (
    "uname -r; . /etc/os-release; echo $PRETTY_NAME; python3 --version; lxc-start --version;"
    " stat -fc 'cgroupfs=%T' /sys/fs/cgroup; echo controllers: $(cat /sys/fs/cgroup/cgroup.controllers);"
    " echo pid1: $(cat /proc/1/comm); echo apparmor: $(cat /sys/module/apparmor/parameters/enabled);"
    " echo apparmor lxc profiles: $(grep -c '^lxc' /sys/kernel/security/apparmor/profiles);"
    " grep '^lxc-container-default' /sys/kernel/security/apparmor/profiles; nproc; free -m | sed -n 2p;"
    " systemctl is-system-running || true"
)


TWO_HOSTS_RUN = (
    "-d", "--ve-suite", "ping", "--ve-count=40", "--ve-batch=10", "--ve-pings=3", "--ve-ping-interval=0.5",
    "--ve-workload=ping-gateway", "-p", "no:cacheprovider",
)  # fmt: skip


class Interrupted(Exception):
    pass


def _interrupt(signum, _frame):
    raise Interrupted(f"signal {signum}")


def checkout_files() -> list[str]:
    result = subprocess.run(
        ["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    )
    names = [name.decode() for name in result.stdout.split(b"\0") if name]
    return [name for name in names if os.path.isfile(os.path.join(REPO, name))]


def prepare_guest(vm: Vm, pip_conf: str, constraint: str | None) -> None:
    """Name the forwarded registries, trust the host's CAs, and give pip the host's settings."""
    hosts = "".join(f"{forward.address} {forward.name}\n" for forward in {f.name: f for f in vm.forwards}.values())
    vm.run(f"printf %s {shlex.quote(hosts)} >> /etc/hosts")
    # The host's CA bundle, its own CAs included, for pip (update-ca-certificates in a TCG
    # guest takes minutes).
    vm.push_file(guestconfig.HOST_CA_BUNDLE, guestconfig.GUEST_CA_BUNDLE)
    vm.write_file("/etc/pip.conf", pip_conf)
    if constraint and os.path.isfile(constraint):
        vm.push_file(constraint, "/etc/pip-constraints.txt")


def host_spec(name: str, root: str, bridge: str, subnet: str, base: str = "popen") -> str:
    settings = {"LXCEXP_HOST": name, "LXCEXP_VE_ROOT": root, "LXCEXP_VE_BRIDGE": bridge, "LXCEXP_VE_SUBNET": subnet}
    return base + "".join(f"//env:{key}={value}" for key, value in settings.items())


def run_two_hosts(vm: Vm, out: str, local: tuple[str, str, str], log) -> dict:
    """One run over this machine (a popen worker) and the VM (an ssh worker): each its own
    kernel, root, bridge and subnet; one summary, one report with a line per host."""
    ssh_config = os.path.join(vm.run_dir, "ssh_config")
    with open(ssh_config, "w") as handle:
        handle.write(
            f"Host lxcexp-vm\n  HostName 127.0.0.1\n  Port {vm.port}\n  User root\n  IdentityFile {vm.key}\n"
            "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  BatchMode yes\n"
        )
    remote = f"ssh=lxcexp-vm//ssh_config={ssh_config}//python={GUEST_CHECKOUT}/.venv/bin/python//chdir={GUEST_CHECKOUT}"
    specs = [
        host_spec("this-machine", *local),
        host_spec(f"vm-{vm.image.release}", "/tmp/lxcexp-hosts-vm", "vehostvm", "10.199.1.0/24", base=remote),
    ]
    root, bridge, subnet = local
    command = [sys.executable, "-m", "pytest", *TWO_HOSTS_RUN, f"--ve-report-dir={out}/two-hosts-reports"]
    # The controller's own options name this machine's: the controller never falls back on /exp.
    command += [f"--ve-root={root}", f"--ve-bridge={bridge}", f"--ve-subnet={subnet}"]
    for spec in specs:
        command += ["--tx", spec]
    started = time.monotonic()
    with open(os.path.join(out, "two-hosts.log"), "w") as handle:
        handle.write(" ".join(shlex.quote(word) for word in command) + "\n")
        handle.flush()
        result = subprocess.run(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, timeout=1800)
    seconds = round(time.monotonic() - started, 1)
    log(f"test-hosts: two hosts (this machine + the {vm.image.release} VM): exit {result.returncode} after {seconds} s")
    return {"two_hosts_rc": result.returncode, "two_hosts_s": seconds}


def run_release(
    release: str,
    results_dir: str,
    selection: str,
    accel: str,
    log,
    two_hosts: tuple[str, str, str] | None = None,
    hold: bool = False,
) -> dict:
    record: dict = {"release": release, "accel": accel, "ok": False}
    out = os.path.join(results_dir, release)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    started = time.monotonic()
    image, build_s = vmimage.cached_image(release, progress=log)
    record["image_build_s"] = build_s
    record["image"] = image.directory
    settings = guestconfig.host_pip_settings()
    pip_conf, indexes = guestconfig.guest_pip_conf(settings)
    apt_sources = vmimage.sources_for(release, image.mirror)
    forwards = registry_forwards(guestconfig.registry_endpoints(apt_sources, indexes))
    run_dir = tempfile.mkdtemp(prefix=f"lxcexp-vm-{release}-")
    key = vmimage.harness_key()
    try:
        with Vm(image, run_dir, key, forwards, accel=accel) as vm:
            log(f"test-hosts: {release}: booting ({accel}); serial console in {vm.serial_log}")
            vm.start()
            record["boot_s"] = round(vm.timings["boot_s"], 1)
            log(f"test-hosts: {release}: ssh up after {record['boot_s']} s")
            guest_log = os.path.join(out, "guest.log")
            prepare_guest(vm, pip_conf, settings.get("constraint"))
            vm.run(f"mkdir -p {GUEST_RESULTS}; {{ {FACTS}; }} > {GUEST_RESULTS}/facts.txt 2>&1", check=False)
            step = time.monotonic()
            vm.push_tree(REPO, checkout_files(), GUEST_CHECKOUT)
            record["copy_s"] = round(time.monotonic() - step, 1)
            step = time.monotonic()
            vm.run(f"cd {GUEST_CHECKOUT} && make venv", log_path=guest_log, timeout=1800)
            record["make_venv_s"] = round(time.monotonic() - step, 1)
            log(f"test-hosts: {release}: make venv took {record['make_venv_s']} s")
            step = time.monotonic()
            tests = vm.run(
                f"cd {GUEST_CHECKOUT} && .venv/bin/pytest tests/integration -k {shlex.quote(selection)}"
                f" -p no:cacheprovider -rfE --junitxml={GUEST_RESULTS}/junit.xml > {GUEST_RESULTS}/pytest.log 2>&1",
                timeout=3600,
                check=False,
            )
            record["tests_s"] = round(time.monotonic() - step, 1)
            record["tests_rc"] = tests.returncode
            log(f"test-hosts: {release}: tests exit {tests.returncode} after {record['tests_s']} s")
            step = time.monotonic()
            figures = vm.run(f"cd {GUEST_CHECKOUT} && {FIGURES_RUN} > {GUEST_RESULTS}/figures.log 2>&1",
                             timeout=1800, check=False)  # fmt: skip
            record["figures_s"] = round(time.monotonic() - step, 1)
            record["figures_rc"] = figures.returncode
            vm.fetch_tree(GUEST_RESULTS, out)
            record["ok"] = tests.returncode == 0 and figures.returncode == 0
            if two_hosts is not None:
                record |= run_two_hosts(vm, out, two_hosts, log)
                record["ok"] = record["ok"] and record["two_hosts_rc"] == 0
            if hold:
                log(f"test-hosts: {release}: holding the VM until Ctrl-C or SIGTERM: "
                    f"{shlex.join(vm.ssh_command(''))}")  # fmt: skip
                while True:
                    time.sleep(60)
    finally:
        for name in ("serial.log", *(f"serial.log.{attempt}" for attempt in range(1, BOOT_ATTEMPTS))):
            with contextlib.suppress(OSError):
                shutil.copy(os.path.join(run_dir, name), os.path.join(out, name))
        shutil.rmtree(run_dir, ignore_errors=True)
        record["total_s"] = round(time.monotonic() - started, 1)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="test-hosts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--release", action="append", help="Debian releases to run (default: bookworm, trixie)")
    parser.add_argument("--results", default=os.path.join(REPO, "build", "test-hosts"))
    parser.add_argument("-k", dest="selection", default=os.environ.get("TEST_HOSTS_K", DEFAULT_SELECTION))
    parser.add_argument("--wide", action="store_true", help="the wider selection of tests (about twice as long)")
    parser.add_argument(
        "--two-hosts",
        nargs=3,
        metavar=("ROOT", "BRIDGE", "SUBNET"),
        help="also run one experiment over this machine (its root, bridge, subnet) and the first release's VM",
    )
    parser.add_argument("--hold", action="store_true", help="keep each VM up after its run, until killed")
    args = parser.parse_args(argv)
    if args.wide:
        args.selection = WIDE_SELECTION
    if os.geteuid() != 0:
        print("test-hosts: needs root (debootstrap, mkfs, the guest's ssh key in /var/cache)", file=sys.stderr)
        return 2
    require_tools()
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    os.makedirs(args.results, exist_ok=True)

    def log(text: str) -> None:
        print(text, flush=True)

    releases = args.release or ["bookworm", "trixie"]
    records = []
    accel = None
    status = 0
    try:
        for release in releases:
            if accel is None:
                image, _ = vmimage.cached_image(release, progress=log)
                accel = "kvm" if kvm_works(image.kernel) else "tcg"
                log(f"test-hosts: accelerator: {accel}")
            try:
                two_hosts = tuple(args.two_hosts) if args.two_hosts and release == releases[0] else None
                records.append(run_release(release, args.results, args.selection, accel, log, two_hosts, args.hold))
            except (VmError, vmimage.ImageError, subprocess.TimeoutExpired) as error:
                records.append({"release": release, "ok": False, "error": str(error)})
                log(f"test-hosts: {release}: {error}")
    except (KeyboardInterrupt, Interrupted) as error:
        log(f"test-hosts: interrupted ({error or 'Ctrl-C'}); every VM was stopped")
        status = 2
    with open(os.path.join(args.results, "summary.json"), "w") as handle:
        json.dump(records, handle, indent=2)
    for record in records:
        log(f"test-hosts: {json.dumps(record)}")
    if status == 0 and not all(record.get("ok") for record in records):
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
