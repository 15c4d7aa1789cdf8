"""engine.config: every parser, build_config, ranges, the dict round trip, and the address plan."""

from __future__ import annotations

import ipaddress
import json

import pytest

from pytest_lxcexp.engine.addressing import AddressPlan, NetworkError
from pytest_lxcexp.engine.config import (
    IFNAME_MAX,
    MAX_VE_COUNT,
    START_DEADLINE,
    ConfigError,
    ExperimentConfig,
    build_config,
    format_size,
    parse_choice,
    parse_ifname,
    parse_positive_int,
    parse_range,
    parse_root,
    parse_seconds,
    parse_size,
    parse_subnet,
    root_tag,
    ve_ranges,
)
from pytest_lxcexp.engine.network import veth_name

# -- build_config: bad values ---------------------------------------------------------

# (build_config keyword overrides, option the error must name, fragment of the reason)
BAD_VALUES = [
    ({"count": 0}, "--ve-count", "positive whole number"),
    ({"count": "0"}, "--ve-count", "positive whole number"),
    ({"count": -1}, "--ve-count", "positive whole number"),
    ({"count": "-1"}, "--ve-count", "positive whole number"),
    ({"count": "abc"}, "--ve-count", "positive whole number"),
    ({"count": "1.5"}, "--ve-count", "positive whole number"),
    ({"count": ""}, "--ve-count", "positive whole number"),
    ({"count": str(MAX_VE_COUNT + 1), "network": "none"}, "--ve-count", f"maximum of {MAX_VE_COUNT}"),
    ({"batch": 0}, "--ve-batch", "positive whole number"),
    ({"batch": "0"}, "--ve-batch", "positive whole number"),
    ({"batch": "ten"}, "--ve-batch", "positive whole number"),
    ({"tmpfs_size": "2X"}, "--ve-tmpfs-size", "is not a size"),
    ({"tmpfs_size": ""}, "--ve-tmpfs-size", "is not a size"),
    ({"tmpfs_size": "G"}, "--ve-tmpfs-size", "is not a size"),
    ({"tmpfs_size": "lots"}, "--ve-tmpfs-size", "is not a size"),
    ({"tmpfs_size": "-2G"}, "--ve-tmpfs-size", "is not a size"),
    ({"tmpfs_size": "10"}, "--ve-tmpfs-size", "minimum of 1M"),
    ({"tmpfs_size": "1023K"}, "--ve-tmpfs-size", "minimum of 1M"),
    ({"tmpfs_size": str(1024 * 1024 - 1)}, "--ve-tmpfs-size", "minimum of 1M"),
    ({"root": "/"}, "--ve-root", "system directory"),
    ({"root": "//"}, "--ve-root", "system directory"),
    ({"root": "/etc"}, "--ve-root", "system directory"),
    ({"root": "/etc/"}, "--ve-root", "system directory"),
    ({"root": "/exp/../etc"}, "--ve-root", "system directory"),
    ({"root": "/var/lib/lxc"}, "--ve-root", "system directory"),
    ({"root": "/tmp"}, "--ve-root", "system directory"),
    ({"root": "/usr/lib/x"}, "--ve-root", "inside the system directory /usr"),
    ({"root": "/proc/foo"}, "--ve-root", "inside the system directory /proc"),
    ({"root": "/sys/fs/cgroup/x"}, "--ve-root", "inside the system directory /sys"),
    ({"root": "relative/path"}, "--ve-root", "not an absolute path"),
    ({"root": "exp"}, "--ve-root", "not an absolute path"),
    ({"root": ""}, "--ve-root", "not an absolute path"),
    ({"base": "alpine"}, "--ve-base", "not one of busybox"),
    ({"network": "foo"}, "--ve-network", "not one of bridge, none"),
    ({"network": "Bridge"}, "--ve-network", "not one of bridge, none"),
    ({"bridge": "ve" + "x" * 14}, "--ve-bridge", f"at most {IFNAME_MAX}"),
    ({"bridge": "averyveryverylongname"}, "--ve-bridge", f"at most {IFNAME_MAX}"),
    ({"bridge": "br0"}, "--ve-bridge", "must begin with 've'"),
    ({"bridge": "ve br"}, "--ve-bridge", "characters an interface name cannot"),
    ({"bridge": "ve/x"}, "--ve-bridge", "characters an interface name cannot"),
    ({"bridge": ""}, "--ve-bridge", "cannot be empty"),
    ({"subnet": "10.0.0.1/16"}, "--ve-subnet", "not an IPv4 subnet"),
    ({"subnet": "nonsense"}, "--ve-subnet", "not an IPv4 subnet"),
    ({"subnet": "fd00::/64"}, "--ve-subnet", "not an IPv4 subnet"),
    ({"subnet": "10.0.0.0/31"}, "--ve-subnet", "too small"),
    ({"subnet": "10.0.0.0/32"}, "--ve-subnet", "too small"),
    ({"subnet": "10.0.0.0/24", "count": 300, "batch": 100}, "--ve-subnet", "too few"),
    ({"subnet": "10.0.0.0/24", "count": 254}, "--ve-subnet", "too few"),
    ({"count": 70000, "network": "bridge"}, "--ve-subnet", "too few for a bridge and 70000 VEs"),
    ({"pings": 0}, "--ve-pings", "positive whole number"),
    ({"pings": "1000001"}, "--ve-pings", "maximum of 1000000"),
    ({"ping_interval": "0"}, "--ve-ping-interval", "must be more than zero"),
    ({"ping_interval": "-1"}, "--ve-ping-interval", "must be more than zero"),
    ({"ping_interval": "nan"}, "--ve-ping-interval", "not a finite number"),
    ({"ping_interval": "fast"}, "--ve-ping-interval", "not a number of seconds"),
    ({"start_delay": "-0.5"}, "--ve-start-delay", "must be zero or more"),
    ({"start_delay": "inf"}, "--ve-start-delay", "not a finite number"),
    ({"timeout": "0"}, "--ve-timeout", "must be more than zero"),
    ({"timeout": 0}, "--ve-timeout", "must be more than zero"),
    ({"timeout": "-3"}, "--ve-timeout", "must be more than zero"),
    ({"timeout": "soon"}, "--ve-timeout", "not a number of seconds"),
    ({"cgroups": "cpu,memroy"}, "--ve-cgroups", "'memroy' is not a cgroup controller"),
    ({"cgroups": ""}, "--ve-cgroups", "'' is not a cgroup controller"),
    ({"cgroups": "cpu,,pids"}, "--ve-cgroups", "'' is not a cgroup controller"),
    ({"cgroups": "cpu,memory"}, "--ve-cgroups", "the list must hold pids"),
    ({"cgroups": "pids,memory", "nice": True}, "--ve-cgroups", "--ve-nice sets a CPU weight"),
    ({"cgroups": "cpu,pids", "init": "system"}, "--ve-cgroups", "a system init needs every hierarchy"),
]


@pytest.mark.parametrize(
    ("overrides", "option", "reason"),
    BAD_VALUES,
    ids=[f"{option}={next(iter(kw.values()))!r}" for kw, option, _ in BAD_VALUES],
)
def test_build_config_rejects_bad_value(overrides: dict, option: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config(**overrides)
    error = caught.value
    assert error.option == option
    assert reason in error.reason
    # The message is "<option>: <reason>", one line, so the plugin can print it as is.
    assert str(error) == f"{option}: {error.reason}"
    assert "\n" not in str(error)
    assert isinstance(error, ValueError)


# -- build_config: good values ---------------------------------------------------------


# (field, its default, as given on the command line, as parsed): one row a field, so the
# defaults and the parsing of every field are checked over the same list.
FIELDS = [
    ("count", 100, "250", 250),
    ("batch", 100, "100", 100),
    ("root", "/exp", "/srv/exp/", "/srv/exp"),
    ("tmpfs_size", 2 * 1024**3, "512M", 512 * 1024**2),
    ("network", "bridge", "none", "none"),
    ("bridge", "vebr", "vetest0", "vetest0"),
    ("subnet", ipaddress.IPv4Network("10.213.0.0/16"), "192.168.40.0/22", ipaddress.IPv4Network("192.168.40.0/22")),
    ("pings", 180, "10", 10),
    ("ping_interval", 1.0, "0.5", 0.5),
    ("start_delay", 0.0, "0.01", 0.01),
    ("timeout", None, "30", 30.0),
    ("keep", False, 1, True),
    ("base_refresh", False, "yes", True),
    ("cgroups", "auto", " pids, cpu,pids ", "pids,cpu"),
]


def _assert_fields(config: ExperimentConfig, expected: dict[str, object]) -> None:
    actual = {name: getattr(config, name) for name in expected}
    assert actual == expected
    # == takes 1 for True: a flag must be the bool itself, and an unset value None itself.
    assert all(actual[name] is value for name, value in expected.items() if value is None or isinstance(value, bool))


def test_build_config_defaults_match_dataclass_defaults() -> None:
    config = build_config()
    assert config == ExperimentConfig()
    _assert_fields(config, {name: default for name, default, _, _ in FIELDS})


def test_build_config_parses_strings_from_the_command_line() -> None:
    config = build_config(**{name: given for name, _, given, _ in FIELDS})
    _assert_fields(config, {name: parsed for name, _, _, parsed in FIELDS})
    assert config.effective_timeout == 30.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2G", 2 * 1024**3),
        ("512M", 512 * 1024**2),
        ("1048576", 1024**2),
        (1048576, 1024**2),
        ("1M", 1024**2),
        ("1024K", 1024**2),
        ("1024k", 1024**2),
        ("1.5G", 3 * 1024**3 // 2),
        ("2g", 2 * 1024**3),
        (" 4G ", 4 * 1024**3),
        ("2GB", 2 * 1024**3),
        ("2GiB", 2 * 1024**3),
        ("1T", 1024**4),
    ],
)
def test_parse_size_good(text: str | int, expected: int) -> None:
    assert parse_size("--ve-tmpfs-size", text) == expected
    assert build_config(tmpfs_size=text).tmpfs_size == expected


@pytest.mark.parametrize(
    ("size", "text"),
    [(2 * 1024**3, "2G"), (512 * 1024**2, "512M"), (1024**4, "1T"), (3 * 1024, "3K"), (1536, "1536"), (7, "7")],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@pytest.mark.parametrize("text", ["2G", "512M", "1T", "1M", "1025M"])
def test_format_size_round_trips_through_parse_size(text: str) -> None:
    assert format_size(parse_size("--ve-tmpfs-size", text)) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", 1), (" 7 ", 7), ("100", 100), (42, 42), (str(MAX_VE_COUNT), MAX_VE_COUNT)],
)
def test_parse_positive_int_good(text: str | int, expected: int) -> None:
    assert parse_positive_int("--ve-count", text, MAX_VE_COUNT) == expected


@pytest.mark.parametrize("text", ["0", "00", "-1", "+1", "1.5", "1e3", "1_000", "", " ", "abc"])
def test_parse_positive_int_bad(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_positive_int("--ve-count", text)
    assert caught.value.option == "--ve-count"
    assert "positive whole number" in caught.value.reason


def test_parse_positive_int_maximum_is_inclusive() -> None:
    assert parse_positive_int("--x", "10", maximum=10) == 10
    with pytest.raises(ConfigError, match=r"^--x: 11 is more than the supported maximum of 10$"):
        parse_positive_int("--x", "11", maximum=10)


@pytest.mark.parametrize(("text", "expected"), [("1", 1.0), ("0.5", 0.5), (" 2.25 ", 2.25), (3, 3.0), ("1e-3", 0.001)])
def test_parse_seconds_good(text: str | float, expected: float) -> None:
    assert parse_seconds("--ve-ping-interval", text) == expected


def test_parse_seconds_zero_only_when_allowed() -> None:
    assert parse_seconds("--ve-start-delay", "0", allow_zero=True) == 0.0
    with pytest.raises(ConfigError, match="must be more than zero"):
        parse_seconds("--ve-timeout", "0")
    with pytest.raises(ConfigError, match="must be zero or more"):
        parse_seconds("--ve-start-delay", "-1", allow_zero=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/exp", "/exp"),
        ("/exp/", "/exp"),
        ("//exp", "/exp"),
        ("///exp//sub/", "/exp/sub"),
        ("/srv/exp", "/srv/exp"),
        ("/tmp/lxcexp", "/tmp/lxcexp"),
        ("/mnt/exp/./run1", "/mnt/exp/run1"),
        ("/var/tmp/exp", "/var/tmp/exp"),
    ],
)
def test_parse_root_good(text: str, expected: str) -> None:
    assert parse_root("--ve-root", text) == expected
    assert build_config(root=text).root == expected


@pytest.mark.parametrize("name", ["vebr", "ve0", "ve_br-1.x", "ve" + "a" * (IFNAME_MAX - 2)])
def test_parse_ifname_good(name: str) -> None:
    assert parse_ifname("--ve-bridge", name) == name


@pytest.mark.parametrize("name", [".", ".."])
def test_parse_ifname_rejects_dot_names(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_ifname("--ve-bridge", name)
    assert caught.value.option == "--ve-bridge"


@pytest.mark.parametrize("text", ["10.213.0.0/16", "192.168.0.0/24", "10.0.0.0/30", " 172.16.0.0/12 "])
def test_parse_subnet_good(text: str) -> None:
    assert parse_subnet("--ve-subnet", text) == ipaddress.IPv4Network(text.strip())


def test_parse_choice() -> None:
    assert parse_choice("--ve-network", "none", ("bridge", "none")) == "none"
    with pytest.raises(ConfigError, match=r"^--ve-network: 'x' is not one of bridge, none$"):
        parse_choice("--ve-network", "x", ("bridge", "none"))


def test_bridge_count_limits() -> None:
    # Past one bridge's 1023 ports VEs spread over sub-bridges: only the subnet limits the count.
    assert build_config(count=4000, batch=100).count == 4000
    assert build_config(count=65533, subnet="10.0.0.0/16").count == 65533
    assert build_config(count=MAX_VE_COUNT, network="none").count == MAX_VE_COUNT


@pytest.mark.parametrize(
    ("count", "subs", "bridge_of"),
    [
        (1023, 0, {1: "vebr", 1023: "vebr"}),
        (1024, 5, {1: "vexxxxxb1", 250: "vexxxxxb1", 251: "vexxxxxb2", 1024: "vexxxxxb5"}),
        (4000, 16, {3751: "vexxxxxb16", 4000: "vexxxxxb16"}),
        (100_000, 400, {100_000: "vexxxxxb400"}),
    ],
)
def test_bridge_layout_spreads_ves_over_sub_bridges(count: int, subs: int, bridge_of: dict[int, str]) -> None:
    from pytest_lxcexp.engine.addressing import BridgeLayout

    layout = BridgeLayout("vebr", "xxxxx", count)
    assert layout.sub_bridges == subs
    assert {index: layout.bridge_for(index) for index in bridge_of} == bridge_of
    assert len(layout.all_bridges()) == subs + 1
    assert all(
        len(name) <= 15 for name in layout.all_bridges() + [n for k in range(1, subs + 1) for n in layout.uplink(k)]
    )


def test_a_range_of_ves_names_the_sub_bridges_it_joins() -> None:
    from pytest_lxcexp.engine.addressing import BridgeLayout

    layout = BridgeLayout("vebr", "xxxxx", 65533)  # a ramp's bound on a /16
    assert layout.sub_bridges_for(1, 3) == [1]
    assert layout.sub_bridges_for(250, 251) == [1, 2]
    assert layout.sub_bridges_for(406, 1039) == [2, 3, 4, 5]
    assert all(
        layout.bridge_for(i) in {layout.sub_bridge(n) for n in layout.sub_bridges_for(406, 1039)} for i in (406, 1039)
    )
    assert BridgeLayout("vebr", "xxxxx", 1000).sub_bridges_for(1, 1000) == []  # all on the main bridge


def test_subnet_size_is_only_checked_for_a_bridge() -> None:
    assert build_config(count=300, subnet="10.0.0.0/24", network="none").count == 300


@pytest.mark.parametrize(("subnet", "most"), [("10.0.0.0/30", 1), ("10.0.0.0/29", 5), ("10.0.0.0/24", 253)])
def test_subnet_capacity_boundary(subnet: str, most: int) -> None:
    config = build_config(count=most, subnet=subnet)
    plan = AddressPlan(config.subnet)
    # Every VE the config accepts has an address in the plan...
    assert plan.ve_address(most) in config.subnet
    assert plan.ve_address(most) != config.subnet.broadcast_address
    # ...and one more is refused by both.
    with pytest.raises(ConfigError) as caught:
        build_config(count=most + 1, subnet=subnet)
    assert caught.value.option == "--ve-subnet"
    with pytest.raises(NetworkError):
        plan.ve_address(most + 1)


def test_batch_larger_than_count_is_one_range() -> None:
    config = build_config(count=5, batch=100)
    assert config.batch == 5
    assert ve_ranges(config.count, config.batch) == [(1, 5)]


@pytest.mark.parametrize(
    ("pings", "interval", "expected"),
    [(180, 1, 240.0), ("10", "0.5", 65.0), (1, "0.2", 60.2), ("3600", "2", 7260.0)],
)
@pytest.mark.parametrize("timeout", [None, "", "auto"])
def test_auto_timeout(pings: int | str, interval: float | str, expected: float, timeout: str | None) -> None:
    config = build_config(pings=pings, ping_interval=interval, timeout=timeout)
    assert config.timeout is None
    assert config.effective_timeout == pytest.approx(config.pings * config.ping_interval + 60)
    assert config.effective_timeout == pytest.approx(expected)


def test_explicit_timeout_wins() -> None:
    assert build_config(timeout="12.5").effective_timeout == 12.5


def test_a_start_gets_its_own_deadline_or_the_ranges_if_shorter() -> None:
    assert build_config().start_deadline == START_DEADLINE == 60.0  # the range has 240 s
    assert build_config(timeout="12.5").start_deadline == 12.5


# -- tags --------------------------------------------------------------------------------


def test_root_tag_is_short_stable_and_distinct() -> None:
    tag = root_tag("/exp")
    assert len(tag) == 5
    assert all(c in "0123456789abcdef" for c in tag)
    assert root_tag("/exp") == tag
    assert root_tag("/exp2") != tag
    assert build_config(root="/exp/").tag == tag


# -- ranges ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "batch", "expected"),
    [
        (250, 100, [(1, 100), (101, 200), (201, 250)]),
        (200, 100, [(1, 100), (101, 200)]),
        (30, 10, [(1, 10), (11, 20), (21, 30)]),
        (5, 100, [(1, 5)]),
        (1, 1, [(1, 1)]),
        (3, 1, [(1, 1), (2, 2), (3, 3)]),
        (7, 3, [(1, 3), (4, 6), (7, 7)]),
    ],
)
def test_ve_ranges(count: int, batch: int, expected: list[tuple[int, int]]) -> None:
    assert ve_ranges(count, batch) == expected


@pytest.mark.parametrize(("count", "batch"), [(1000, 100), (1023, 100), (997, 7), (10, 1)])
def test_ve_ranges_cover_every_ve_once(count: int, batch: int) -> None:
    ranges = ve_ranges(count, batch)
    covered = [index for first, last in ranges for index in range(first, last + 1)]
    assert covered == list(range(1, count + 1))
    assert all(last - first + 1 <= batch for first, last in ranges)


@pytest.mark.parametrize(("count", "batch"), [(0, 1), (1, 0), (-5, 10)])
def test_ve_ranges_rejects_non_positive(count: int, batch: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        ve_ranges(count, batch)


@pytest.mark.parametrize(
    ("first", "last", "count", "expected"),
    [
        (None, None, 250, (1, 250)),
        ("101", "200", 250, (101, 200)),
        ("5", None, 10, (5, 10)),
        (None, "3", 10, (1, 3)),
        (7, 7, 10, (7, 7)),
        ("10", "10", 10, (10, 10)),
    ],
)
def test_parse_range_good(first: str | None, last: str | None, count: int, expected: tuple[int, int]) -> None:
    assert parse_range("range", first, last, count) == expected


@pytest.mark.parametrize(
    ("first", "last", "count", "reason"),
    [
        ("1", "251", 250, "outside the experiment's 250 VEs"),
        ("300", None, 250, "outside the experiment's 250 VEs"),
        (None, "11", 10, "outside the experiment's 10 VEs"),
        ("10", "5", 250, "range start 10 is after its end 5"),
        ("0", None, 10, "positive whole number"),
        (None, "x", 10, "positive whole number"),
    ],
)
def test_parse_range_bad(first: str | None, last: str | None, count: int, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_range("range", first, last, count)
    assert caught.value.option == "range"
    assert reason in caught.value.reason


# -- to_dict / from_dict --------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        ExperimentConfig(),
        build_config(count=250, batch=100, root="/srv/exp", tmpfs_size="512M", timeout="30", keep=True),
        build_config(count=2000, network="none", subnet="10.9.0.0/30", pings=5, ping_interval="0.2", start_delay="1"),
    ],
    ids=["defaults", "bridge", "none"],
)
def test_config_dict_round_trip(config: ExperimentConfig) -> None:
    data = config.to_dict()
    assert data["subnet"] == str(config.subnet)
    # The dict is what the marker file stores: it must survive JSON.
    restored = ExperimentConfig.from_dict(json.loads(json.dumps(data)))
    assert restored == config
    assert restored.subnet == config.subnet
    assert isinstance(restored.subnet, ipaddress.IPv4Network)
    assert restored.tag == config.tag
    assert restored.effective_timeout == config.effective_timeout


def test_from_dict_ignores_unknown_keys_and_fills_defaults() -> None:
    restored = ExperimentConfig.from_dict({"count": 7, "batch": 3, "written_by": "a newer version"})
    # Except cgroups: a marker without it was written before --ve-cgroups (every hierarchy);
    # and a per-VE pids limit: none, as before --ve-pids-max had one; no memory limit either.
    assert restored == ExperimentConfig(count=7, batch=3, cgroups="all", ve_pids_max=0, memory_max=0)


# -- the address plan and veth names ----------------------------------------------------------


def test_address_plan_gateway_and_first_ve() -> None:
    plan = AddressPlan(ipaddress.IPv4Network("10.213.0.0/16"))
    assert plan.gateway == ipaddress.IPv4Address("10.213.0.1")
    assert plan.ve_address(1) == ipaddress.IPv4Address("10.213.0.2")
    # In a /16, .255 and .0 of the inner octets are ordinary host addresses.
    assert plan.ve_address(254) == ipaddress.IPv4Address("10.213.0.255")
    assert plan.ve_address(255) == ipaddress.IPv4Address("10.213.1.0")
    assert plan.prefixlen == 16


@pytest.mark.parametrize("subnet", ["10.0.0.0/24", "192.168.8.0/22", "10.0.0.0/30"])
def test_address_plan_relative_to_network(subnet: str) -> None:
    network = ipaddress.IPv4Network(subnet)
    plan = AddressPlan(network)
    assert plan.gateway == network.network_address + 1
    assert plan.ve_address(1) == network.network_address + 2


def test_address_plan_addresses_are_distinct_hosts() -> None:
    network = ipaddress.IPv4Network("10.0.0.0/25")
    plan = AddressPlan(network)
    addresses = [plan.gateway] + [plan.ve_address(index) for index in range(1, 126)]
    assert len(set(addresses)) == len(addresses)
    assert set(addresses) == set(network.hosts())


@pytest.mark.parametrize(("subnet", "index"), [("10.0.0.0/24", 254), ("10.0.0.0/24", 1000), ("10.0.0.0/30", 2)])
def test_address_plan_index_past_subnet_raises(subnet: str, index: int) -> None:
    with pytest.raises(NetworkError, match=f"ve{index} has no address left in {subnet}"):
        AddressPlan(ipaddress.IPv4Network(subnet)).ve_address(index)


@pytest.mark.parametrize("index", [1, 1023, 99999, MAX_VE_COUNT])
def test_veth_name_fits_ifname(index: int) -> None:
    tag = root_tag("/exp")
    name = veth_name(tag, index)
    assert name == f"ve{tag}-{index}"
    assert len(name) <= IFNAME_MAX
    # A veth name is itself a valid interface name of ours.
    assert parse_ifname("--ve-bridge", name) == name


def test_parse_range_of_one_hosts_part_defaults_to_and_stays_within_it() -> None:
    assert parse_range("S E", None, None, 40, lowest=21) == (21, 40)
    assert parse_range("S E", "25", None, 40, lowest=21) == (25, 40)
    with pytest.raises(ConfigError, match="range 1-40 lies outside this root's VEs ve21-ve40"):
        parse_range("S E", "1", None, 40, lowest=21)


@pytest.mark.parametrize(
    ("cgroups", "init", "controllers"),
    [
        ("auto", "workload", ("cpu", "pids")),
        ("auto", "system", None),  # a system init manages cgroups of its own: every hierarchy
        ("all", "workload", None),
        ("memory,cpu,pids", "workload", ("memory", "cpu", "pids")),
        ("all", "system", None),
    ],
)
def test_ve_controllers_follow_cgroups_and_init(cgroups: str, init: str, controllers: tuple | None) -> None:
    assert build_config(cgroups=cgroups, init=init).ve_controllers == controllers


def test_a_marker_from_before_ve_cgroups_means_every_hierarchy() -> None:
    # Its VEs were started with liblxc's default; a later start must not mix in another layout.
    data = build_config().to_dict()
    assert ExperimentConfig.from_dict(data).cgroups == "auto"
    del data["cgroups"]
    assert ExperimentConfig.from_dict(data).cgroups == "all"
