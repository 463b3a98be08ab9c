//! Malformed configs: each asserts the exact line, column and message of
//! every error, and that no other error is reported.

use std::path::Path;

use control::config::{parse, ConfigError};

/// Parses `text` and returns its errors as (line, col, message).
fn errors(text: &str) -> Vec<(usize, usize, String)> {
    match parse(text, "t.toml") {
        Ok(c) => panic!("expected errors, got a valid config: {c:?}"),
        Err(e) => {
            assert!(!e.errors.is_empty(), "an Err must carry errors");
            e.errors
                .into_iter()
                .map(
                    |ConfigError {
                         file,
                         line,
                         col,
                         message,
                     }| {
                        assert_eq!(file, "t.toml");
                        (line, col, message)
                    },
                )
                .collect()
        }
    }
}

/// Asserts exactly these errors, in this order.
#[track_caller]
fn check(text: &str, expected: &[(usize, usize, &str)]) {
    let got = errors(text);
    let want: Vec<(usize, usize, String)> = expected
        .iter()
        .map(|(l, c, m)| (*l, *c, (*m).to_owned()))
        .collect();
    assert_eq!(got, want, "\n--- config ---\n{text}");
}

const NODE: &str = "[node]\nname = \"lb1\"\n";

/// `NODE` followed by `rest`; errors in `rest` are on line 3 and later.
fn with_node(rest: &str) -> String {
    format!("{NODE}{rest}")
}

// ---------------------------------------------------------------- syntax

#[test]
fn syntax_unterminated_string() {
    check(
        "[node]\nname = \"lb1\n",
        &[(2, 12, "invalid TOML: invalid basic string, expected `\"`")],
    );
}

#[test]
fn syntax_missing_value() {
    check(
        "[node]\nname = \"lb1\"\nworker_threads =\n",
        &[(
            3,
            17,
            "invalid TOML: string values must be quoted, expected literal string",
        )],
    );
}

#[test]
fn syntax_duplicate_key() {
    check(
        "[node]\nname = \"lb1\"\nname = \"lb2\"\n",
        &[(3, 1, "duplicate key 'name'")],
    );
}

#[test]
fn syntax_duplicate_table() {
    check(
        "[node]\nname = \"lb1\"\n[node]\nname = \"lb2\"\n",
        &[
            (3, 2, "duplicate key 'node'"),
            // The second [node] adds to the first one, so its `name` is a duplicate too.
            (4, 1, "duplicate key 'name'"),
        ],
    );
}

#[test]
fn syntax_columns_count_characters_not_bytes() {
    // "é" is two bytes; the stray token is the 14th character of line 2.
    check(
        "[node]\nname = \"lbé\" x\n",
        &[(
            2,
            14,
            "invalid TOML: unexpected key or value, expected newline, `#`",
        )],
    );
}

// ---------------------------------------------------------------- types

#[test]
fn type_string_for_integer() {
    check(
        &with_node(
            "[[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvrid = \"51\"\nvirtual_ips = [\"10.0.0.1\"]\n",
        ),
        &[(6, 8, "vrid must be an integer, got \"51\"")],
    );
}

#[test]
fn type_integer_for_string() {
    check(
        "[node]\nname = 7\n",
        &[(2, 8, "name must be a string, got 7")],
    );
}

#[test]
fn type_string_for_array() {
    check(
        &with_node(
            "[[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvrid = 1\nvirtual_ips = \"10.0.0.1\"\n",
        ),
        &[(7, 15, "virtual_ips must be an array, got \"10.0.0.1\"")],
    );
}

#[test]
fn type_wrong_array_element() {
    check(
        &with_node(
            "[[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvrid = 1\nvirtual_ips = [\"10.0.0.1\", 5]\n",
        ),
        &[(7, 28, "virtual_ips[1] must be a string, got 5")],
    );
}

#[test]
fn type_integer_for_table_and_string_for_bool() {
    check(
        &with_node(
            "[[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvrid = 1\nvirtual_ips = [\"10.0.0.1\"]\ngarp = 5\npreempt = \"yes\"\n",
        ),
        &[
            (8, 8, "garp must be a table, got 5"),
            (9, 11, "preempt must be a boolean, got \"yes\""),
        ],
    );
}

#[test]
fn type_integer_for_duration() {
    check(
        &with_node(
            "[[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvrid = 1\nvirtual_ips = [\"10.0.0.1\"]\nadvert_interval = 1\n",
        ),
        &[(
            8,
            19,
            "advert_interval must be a duration string such as \"10ms\" or \"1s\", got 1",
        )],
    );
}

#[test]
fn type_section_shapes() {
    check(
        "[node]\nname = \"lb1\"\n[vrrp]\nname = \"v\"\n[[cluster]]\nport = 1\n",
        &[
            (
                3,
                1,
                "vrrp must be an array of tables ([[vrrp]]), got a table",
            ),
            (5, 1, "cluster must be a table ([cluster]), got an array"),
        ],
    );
}

#[test]
fn type_float_in_nested_dotted_key() {
    check(
        &with_node(
            "[[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvrid = 1\nvirtual_ips = [\"10.0.0.1\"]\ngarp.repeat = 1.5\n",
        ),
        &[(8, 15, "garp.repeat must be an integer, got 1.5")],
    );
}

// ---------------------------------------------------------------- unknown keys

#[test]
fn unknown_top_level_key() {
    check(
        &with_node("[logging]\nlevel = \"info\"\n"),
        &[(
            3,
            2,
            "unknown key 'logging', expected one of: node, vrrp, frontend, backend, cluster",
        )],
    );
}

#[test]
fn unknown_key_in_node() {
    check(
        "[node]\nname = \"lb1\"\nthreads = 4\n",
        &[(
            3,
            1,
            "unknown key 'threads', expected one of: name, admin_socket, metrics_listen, worker_threads, worker_scaling, log_level, shutdown_timeout",
        )],
    );
}

#[test]
fn unknown_key_in_vrrp_does_not_hide_bad_vrid() {
    check(
        &with_node(
            "[[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvrid = 0\nvridd = 51\nvirtual_ips = [\"10.0.0.1\"]\n",
        ),
        &[
            (6, 8, "vrid must be 1..=255, got 0"),
            (
                7,
                1,
                "unknown key 'vridd', expected one of: name, interface, vrid, priority, version, advert_interval, preempt, preempt_delay, accept_mode, virtual_ips, unicast_peers, unicast_source, garp, track_interfaces, track_scripts, track_files, notify, notify_timeout, use_vmac, v3_checksum, auth_pass, sync_group",
            ),
        ],
    );
}

#[test]
fn unknown_key_in_frontend() {
    check(
        &with_node(
            "[[frontend]]\nname = \"web\"\nbind = \"127.0.0.1:80\"\nbackend = \"web\"\nport = 80\n[[backend]]\nname = \"web\"\nservers = [{ name = \"a\", address = \"127.0.0.1:81\" }]\n",
        ),
        &[(
            7,
            1,
            "unknown key 'port', expected one of: name, bind, mode, backend, forwarding, xdp, interface, timeouts, buffer_size, max_connections, forwarded_headers, accept_proxy_protocol, max_header_size",
        )],
    );
}

#[test]
fn unknown_key_in_backend_server_and_health() {
    check(
        &with_node(
            "[[backend]]\nname = \"web\"\nservers = [{ name = \"a\", address = \"127.0.0.1:81\", wieght = 2 }]\nhealth = { kind = \"http\", url = \"/\" }\n",
        ),
        &[
            (
                5,
                52,
                "unknown key 'servers[0].wieght', expected one of: name, address, weight, max_connections, backup",
            ),
            (
                6,
                27,
                "unknown key 'health.url', expected one of: kind, path, method, host, expect_status, expect_body, interval, timeout, jitter, rise, fall",
            ),
        ],
    );
}

#[test]
fn unknown_key_in_cluster_and_fence_device() {
    check(
        "[node]\nname = \"lb1\"\n[cluster]\nnodes = [{ name = \"lb1\", addresses = [\"10.0.0.1\"] }]\nauth_key_file = \"/k\"\ntoken = 3\n[[cluster.fence_device]]\nname = \"f\"\nagent = \"/usr/sbin/fence_dummy\"\nnodes = [\"lb1\"]\nplug = \"x\"\n",
        &[
            (
                6,
                1,
                "unknown key 'token', expected one of: nodes, port, auth_key_file, heartbeat_interval, miss_count, encrypt, quorum, no_quorum_policy, failback, witness, fence_device",
            ),
            (
                11,
                1,
                "unknown key 'plug', expected one of: name, agent, nodes, action, timeout, retries, delay_max, monitor_interval, options",
            ),
        ],
    );
}

#[test]
fn unknown_key_in_inline_tables() {
    check(
        &with_node(
            "[[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvrid = 1\nvirtual_ips = [\"10.0.0.1\"]\ngarp = { repeat = 1, count = 2 }\ntrack_interfaces = [{ name = \"eth1\", wieght = 1 }]\n",
        ),
        &[
            (
                8,
                22,
                "unknown key 'garp.count', expected one of: repeat, interval, refresh",
            ),
            (
                9,
                38,
                "unknown key 'track_interfaces[0].wieght', expected one of: name, weight",
            ),
        ],
    );
}

// ---------------------------------------------------------------- ranges

/// A valid vrrp instance with `extra` keys added.
fn vrrp(extra: &str) -> String {
    with_node(&format!(
        "[[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvirtual_ips = [\"10.0.0.1/24\"]\n{extra}"
    ))
}

#[test]
fn vrid_zero_and_256() {
    check(
        &with_node(
            "[[vrrp]]\nname = \"a\"\ninterface = \"eth0\"\nvrid = 0\nvirtual_ips = [\"10.0.0.1\"]\n[[vrrp]]\nname = \"b\"\ninterface = \"eth0\"\nvrid = 256\nvirtual_ips = [\"10.0.0.2\"]\n",
        ),
        &[
            (6, 8, "vrid must be 1..=255, got 0"),
            (11, 8, "vrid must be 1..=255, got 256"),
        ],
    );
}

#[test]
fn priority_zero_and_bad_version() {
    check(
        &vrrp("vrid = 1\npriority = 0\nversion = 4\n"),
        &[
            (8, 12, "priority must be 1..=255, got 0"),
            (9, 11, "version must be 2 or 3, got 4"),
        ],
    );
}

#[test]
fn advert_interval_too_short_for_v3() {
    check(
        &vrrp("vrid = 1\nadvert_interval = \"5ms\"\n"),
        &[(
            8,
            19,
            "advert_interval must be 10ms..=40.95s for version 3, got \"5ms\"",
        )],
    );
}

#[test]
fn advert_interval_not_centiseconds_for_v3() {
    check(
        &vrrp("vrid = 1\nadvert_interval = \"15ms\"\n"),
        &[(
            8,
            19,
            "advert_interval must be a multiple of 10ms for version 3, got \"15ms\"",
        )],
    );
}

#[test]
fn advert_interval_fraction_for_v2() {
    check(
        &vrrp("vrid = 1\nversion = 2\nadvert_interval = \"1500ms\"\n"),
        &[(
            9,
            19,
            "advert_interval must be whole seconds 1s..=255s for version 2, got \"1500ms\"",
        )],
    );
}

#[test]
fn bad_duration_string() {
    check(
        &vrrp("vrid = 1\npreempt_delay = \"soon\"\ngarp = { interval = \"10 parsecs\" }\n"),
        &[
            (
                8,
                17,
                "preempt_delay must be a duration such as \"10ms\" or \"1s\", got \"soon\"",
            ),
            (
                9,
                21,
                "garp.interval must be a duration such as \"10ms\" or \"1s\", got \"10 parsecs\"",
            ),
        ],
    );
}

#[test]
fn bad_cidr() {
    check(
        &with_node(
            "[[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvrid = 1\nvirtual_ips = [\"10.0.0.300/24\", \"10.0.0.1/33\"]\n",
        ),
        &[
            (
                7,
                16,
                "virtual_ips[0] must be an address or CIDR such as \"10.0.0.100/24\" or \"2001:db8::1/64\", got \"10.0.0.300/24\"",
            ),
            (
                7,
                33,
                "virtual_ips[1] must be an address or CIDR such as \"10.0.0.100/24\" or \"2001:db8::1/64\", got \"10.0.0.1/33\"",
            ),
        ],
    );
}

#[test]
fn node_values_out_of_range() {
    check(
        "[node]\nname = \"lb 1\"\nworker_threads = 0\nlog_level = \"verbose\"\nadmin_socket = \"\"\nworker_scaling = \"some\"\n",
        &[
            (
                2,
                8,
                "name may contain only letters, digits, '.', '_' and '-', got \"lb 1\" (with ' ')",
            ),
            (3, 18, "worker_threads must be 1..=1024, got 0"),
            (
                4,
                13,
                "log_level must be one of: error, warn, info, debug, trace, got \"verbose\"",
            ),
            (5, 16, "admin_socket must not be empty"),
            (
                6,
                18,
                "worker_scaling must be one of: auto, all, got \"some\"",
            ),
        ],
    );
}

#[test]
fn interface_name_too_long() {
    check(
        &with_node(
            "[[vrrp]]\nname = \"v\"\ninterface = \"a-very-long-ifname\"\nvrid = 1\nvirtual_ips = [\"10.0.0.1\"]\n",
        ),
        &[(
            5,
            13,
            "interface must be a Linux interface name (1 to 15 bytes, no '/', ':' or spaces), got \"a-very-long-ifname\"",
        )],
    );
}

#[test]
fn vrrp_nested_values_out_of_range() {
    check(
        &vrrp(
            "vrid = 1\ngarp = { repeat = 101 }\ntrack_scripts = [{ command = [], rise = 0 }, { weight = 300 }]\nnotify = [\"notify.sh\"]\n",
        ),
        &[
            (8, 19, "garp.repeat must be 0..=100, got 101"),
            (9, 30, "track_scripts[0].command must name a program to run"),
            (9, 41, "track_scripts[0].rise must be at least 1, got 0"),
            (9, 46, "missing required key 'track_scripts[1].command'"),
            (9, 57, "track_scripts[1].weight must be -254..=254, got 300"),
            (10, 11, "notify[0] must be an absolute path, got \"notify.sh\""),
        ],
    );
}

// ---------------------------------------------------------------- frontend / backend values

/// A valid backend "web" after `NODE` (lines 3..=5).
const BACKEND: &str =
    "[[backend]]\nname = \"web\"\nservers = [{ name = \"a\", address = \"127.0.0.1:81\" }]\n";

#[test]
fn frontend_values_out_of_range() {
    check(
        &with_node(&format!(
            "{BACKEND}[[frontend]]\nname = \"web\"\nbind = \"127.0.0.1\"\nbackend = \"web\"\nmode = \"https\"\nbuffer_size = 512\ntimeouts = {{ connect = \"0s\" }}\n"
        )),
        &[
            (
                8,
                8,
                "bind must be an address with a port such as \"10.0.0.1:80\" or \"[2001:db8::1]:80\", got \"127.0.0.1\"",
            ),
            (10, 8, "mode must be one of: tcp, udp, http, got \"https\""),
            (11, 15, "buffer_size must be 1024..=16777216, got 512"),
            (12, 24, "timeouts.connect must be more than 0s, got \"0s\""),
        ],
    );
}

#[test]
fn server_weight_and_health_values() {
    check(
        &with_node(
            "[[backend]]\nname = \"web\"\nservers = [{ name = \"a\", address = \"127.0.0.1:81\", weight = 300 }]\nhealth = { kind = \"http\", path = \"healthz\", expect_status = [99], rise = 0 }\n",
        ),
        &[
            (5, 61, "servers[0].weight must be 0..=256, got 300"),
            (6, 34, "health.path must start with '/', got \"healthz\""),
            (6, 62, "health.expect_status[0] must be 100..=599, got 99"),
            (6, 74, "health.rise must be at least 1, got 0"),
        ],
    );
}

#[test]
fn backend_without_servers() {
    check(
        &with_node("[[backend]]\nname = \"web\"\nservers = []\n[[backend]]\nname = \"api\"\n"),
        &[
            (5, 11, "servers must list at least one server"),
            (6, 1, "missing required key 'servers'"),
        ],
    );
}

#[test]
fn health_timeout_longer_than_interval() {
    check(
        &with_node(&format!(
            "{BACKEND}health = {{ interval = \"1s\", timeout = \"1500ms\" }}\n"
        )),
        &[(
            6,
            39,
            "health.timeout (1s 500ms) must not be longer than health.interval (1s)",
        )],
    );
}

#[test]
fn maglev_table_not_prime() {
    check(
        &with_node(
            "[[backend]]\nname = \"dns\"\nalgorithm = \"maglev\"\nmaglev_table_size = 65536\nservers = [{ name = \"a\", address = \"127.0.0.1:53\" }]\n",
        ),
        &[(6, 21, "maglev_table_size must be a prime number, got 65536")],
    );
}

#[test]
fn maglev_keys_without_maglev() {
    check(
        &with_node(
            "[[backend]]\nname = \"dns\"\nhash_key = { header = \"X-User\" }\nmaglev_table_size = 3\nservers = [{ name = \"a\", address = \"127.0.0.1:53\" }, { name = \"b\", address = \"127.0.0.1:54\" }, { name = \"c\", address = \"127.0.0.1:55\" }]\n",
        ),
        &[
            (5, 12, "hash_key is only used with algorithm = \"maglev\""),
            (6, 21, "maglev_table_size is only used with algorithm = \"maglev\""),
            (
                6,
                21,
                "maglev_table_size must be larger than the number of servers (3), got 3",
            ),
        ],
    );
}

#[test]
fn bad_hash_key() {
    check(
        &with_node(
            "[[backend]]\nname = \"dns\"\nalgorithm = \"maglev\"\nhash_key = \"dest-ip\"\nservers = [{ name = \"a\", address = \"127.0.0.1:53\" }]\n[[backend]]\nname = \"api\"\nalgorithm = \"maglev\"\nhash_key = { header = \"X-A\", cookie = \"s\" }\nservers = [{ name = \"a\", address = \"127.0.0.1:54\" }]\n",
        ),
        &[
            (
                6,
                12,
                "hash_key must be one of: source-ip, source-ip-port, { header = \"...\" }, { cookie = \"...\" }, got \"dest-ip\"",
            ),
            (11, 12, "hash_key table must have exactly one of: header, cookie"),
        ],
    );
}

#[test]
fn forwarding_xdp_mode_combinations() {
    check(
        &with_node(&format!(
            "{BACKEND}[[frontend]]\nname = \"a\"\nbind = \"127.0.0.1:80\"\nbackend = \"web\"\nforwarding = \"ipip\"\nxdp = \"native\"\n[[frontend]]\nname = \"b\"\nbind = \"127.0.0.1:81\"\nbackend = \"web\"\nmode = \"tcp\"\nxdp = \"generic\"\ninterface = \"eth0\"\n"
        )),
        &[
            (6, 1, "missing required key 'interface' (the XDP program of xdp = \"native\" needs an interface)"),
            (
                10,
                14,
                "forwarding = \"ipip\" works only with mode \"tcp\" or \"udp\", this frontend has mode \"http\"",
            ),
            (17, 7, "xdp must be \"off\" when forwarding = \"proxy\""),
        ],
    );
}

// ---------------------------------------------------------------- references and duplicates

#[test]
fn dangling_backend_reference() {
    check(
        &with_node(&format!(
            "{BACKEND}[[frontend]]\nname = \"web\"\nbind = \"127.0.0.1:80\"\nbackend = \"wbe\"\n"
        )),
        &[(
            9,
            11,
            "frontend 'web' names backend 'wbe' which does not exist",
        )],
    );
}

#[test]
fn reference_to_a_broken_backend_is_not_reported_twice() {
    // The backend has an error of its own; the frontend naming it is fine.
    check(
        &with_node(
            "[[backend]]\nname = \"web\"\nservers = 3\n[[frontend]]\nname = \"web\"\nbind = \"127.0.0.1:80\"\nbackend = \"web\"\n",
        ),
        &[(5, 11, "servers must be an array, got 3")],
    );
}

#[test]
fn duplicate_names() {
    check(
        &with_node(&format!(
            "{BACKEND}{BACKEND}[[frontend]]\nname = \"f\"\nbind = \"127.0.0.1:80\"\nbackend = \"web\"\n[[frontend]]\nname = \"f\"\nbind = \"127.0.0.1:81\"\nbackend = \"web\"\n"
        )),
        &[
            (7, 8, "duplicate backend name 'web' (first used on line 4)"),
            (14, 8, "duplicate frontend name 'f' (first used on line 10)"),
        ],
    );
}

#[test]
fn duplicate_vrrp_names_and_router_ids() {
    check(
        &with_node(
            "[[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvrid = 7\nvirtual_ips = [\"10.0.0.1\"]\n[[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvrid = 7\nvirtual_ips = [\"10.0.0.2\"]\n[[vrrp]]\nname = \"v6\"\ninterface = \"eth0\"\nvrid = 7\nvirtual_ips = [\"2001:db8::1\"]\n",
        ),
        &[
            (9, 8, "duplicate vrrp name 'v' (first used on line 4)"),
            (
                11,
                8,
                "vrid 7 on eth0 (IPv4) is already used by vrrp instance 'v'",
            ),
        ],
    );
}

#[test]
fn duplicate_servers_in_backend() {
    check(
        &with_node(
            "[[backend]]\nname = \"web\"\nservers = [\n  { name = \"a\", address = \"127.0.0.1:81\" },\n  { name = \"a\", address = \"127.0.0.1:81\" },\n]\n",
        ),
        &[
            (7, 12, "duplicate server name 'a' (first used on line 6)"),
            (
                7,
                27,
                "servers[1].address 127.0.0.1:81 is already used by server 'a'",
            ),
        ],
    );
}

#[test]
fn duplicate_vip_across_instances() {
    check(
        &with_node(
            "[[vrrp]]\nname = \"a\"\ninterface = \"eth0\"\nvrid = 1\nvirtual_ips = [\"10.0.0.100/24\"]\n[[vrrp]]\nname = \"b\"\ninterface = \"eth1\"\nvrid = 2\nvirtual_ips = [\"10.0.0.5\", \"10.0.0.100/32\"]\n",
        ),
        &[(
            12,
            28,
            "virtual ip 10.0.0.100 is already claimed by vrrp instance 'a'",
        )],
    );
}

#[test]
fn mixed_family_vips() {
    check(
        &with_node(
            "[[vrrp]]\nname = \"a\"\ninterface = \"eth0\"\nvrid = 1\nvirtual_ips = [\"10.0.0.1/24\", \"2001:db8::1/64\"]\n",
        ),
        &[(
            7,
            31,
            "virtual_ips[1] is IPv6 but virtual_ips[0] is IPv4; one vrrp instance carries one address family",
        )],
    );
}

#[test]
fn ipv6_vip_with_version_2() {
    check(
        &with_node(
            "[[vrrp]]\nname = \"a\"\ninterface = \"eth0\"\nvrid = 1\nversion = 2\nvirtual_ips = [\"2001:db8::1\"]\n",
        ),
        &[(
            8,
            16,
            "virtual_ips[0] is IPv6 but version 2 carries IPv4 only; use version = 3",
        )],
    );
}

#[test]
fn unicast_peers_of_wrong_family_or_own_vip() {
    check(
        &vrrp(
            "vrid = 1\nunicast_peers = [\"2001:db8::2\", \"10.0.0.1\", \"10.0.0.2\", \"10.0.0.2\"]\nunicast_source = \"fe80::1\"\n",
        ),
        &[
            (8, 18, "unicast_peers[0] 2001:db8::2 is IPv6 but the virtual_ips are IPv4"),
            (
                8,
                33,
                "unicast_peers[1] 10.0.0.1 is one of this instance's own virtual_ips",
            ),
            (8, 57, "unicast_peers[3] 10.0.0.2 is listed twice"),
            (9, 18, "unicast_source fe80::1 is IPv6 but the virtual_ips are IPv4"),
        ],
    );
}

#[test]
fn duplicate_bind_per_transport() {
    // http and tcp share the TCP port space; udp on the same port is fine.
    check(
        &with_node(&format!(
            "{BACKEND}[[frontend]]\nname = \"a\"\nbind = \"127.0.0.1:80\"\nbackend = \"web\"\n[[frontend]]\nname = \"b\"\nbind = \"127.0.0.1:80\"\nmode = \"udp\"\nbackend = \"web\"\n[[frontend]]\nname = \"c\"\nbind = \"127.0.0.1:80\"\nmode = \"tcp\"\nbackend = \"web\"\n"
        )),
        &[(
            17,
            8,
            "bind 127.0.0.1:80 (tcp) is already used by frontend 'a'",
        )],
    );
}

// ---------------------------------------------------------------- cluster

/// `[node] name = "lb1"` and a cluster of `nodes`, then `extra`.
fn cluster(nodes: &str, extra: &str) -> String {
    with_node(&format!(
        "[cluster]\nnodes = {nodes}\nauth_key_file = \"/etc/halb/cluster.key\"\n{extra}"
    ))
}

#[test]
fn cluster_does_not_list_this_node() {
    check(
        &cluster(
            "[{ name = \"lb2\", addresses = [\"10.0.0.2\"] }, { name = \"lb3\", addresses = [\"10.0.0.3\"] }]",
            "",
        ),
        &[(4, 9, "node.name 'lb1' is not listed in cluster nodes")],
    );
}

#[test]
fn fence_device_names_unknown_node() {
    check(
        &cluster(
            "[{ name = \"lb1\", addresses = [\"10.0.0.1\"] }, { name = \"lb2\", addresses = [\"10.0.0.2\"] }]",
            "[[cluster.fence_device]]\nname = \"f\"\nagent = \"/usr/sbin/fence_dummy\"\nnodes = [\"lb2\", \"lb7\"]\n",
        ),
        &[(
            9,
            17,
            "fence_device 'f' names node 'lb7' which is not in cluster nodes",
        )],
    );
}

#[test]
fn cluster_links_votes_and_two_node() {
    check(
        &cluster(
            "[{ name = \"lb1\", addresses = [\"10.0.0.1\", \"10.9.0.1\"] }, { name = \"lb2\", addresses = [\"10.0.0.2\"] }, { name = \"lb3\", addresses = [\"10.0.0.1\", \"10.9.0.3\"] }]",
            "miss_count = 1\nquorum = { two_node = true }\n",
        ),
        &[
            (
                4,
                94,
                "nodes[1].addresses has 1 address(es) but nodes[0].addresses has 2; every node needs one address per link",
            ),
            (
                4,
                139,
                "nodes[2].addresses[0] 10.0.0.1 is already used by cluster node 'lb1'",
            ),
            (6, 14, "miss_count must be 2..=100, got 1"),
            (7, 23, "quorum.two_node needs exactly 2 nodes, nodes has 3"),
        ],
    );
}

#[test]
fn cluster_missing_keys_and_bad_fence_device() {
    check(
        "[node]\nname = \"lb1\"\n[cluster]\nnodes = [{ name = \"lb1\", addresses = [] }]\nexpected = 1\n[[cluster.fence_device]]\nname = \"f\"\nagent = \"fence_dummy\"\nnodes = [\"lb1\"]\naction = \"kill\"\noptions = { action = \"on\", status_file = \"/tmp/s\" }\n",
        &[
            (3, 1, "missing required key 'auth_key_file'"),
            (4, 38, "nodes[0].addresses must list at least one address"),
            (
                5,
                1,
                "unknown key 'expected', expected one of: nodes, port, auth_key_file, heartbeat_interval, miss_count, encrypt, quorum, no_quorum_policy, failback, witness, fence_device",
            ),
            (8, 9, "agent must be an absolute path, got \"fence_dummy\""),
            (10, 10, "action must be one of: off, reboot, got \"kill\""),
            (
                11,
                22,
                "options.action is set by halb for each operation; use the action key",
            ),
        ],
    );
}

// ---------------------------------------------------------------- whole file

#[test]
fn missing_node_table_and_required_keys() {
    check(
        "[[vrrp]]\nname = \"v\"\n",
        &[
            (1, 1, "missing required table [node]"),
            (1, 1, "missing required key 'interface'"),
            (1, 1, "missing required key 'vrid'"),
            (1, 1, "missing required key 'virtual_ips'"),
        ],
    );
}

#[test]
fn errors_in_every_section_are_all_reported() {
    let text = "\
[node]
name = \"lb1\"
shutdown_timeout = \"forever\"

[[vrrp]]
name = \"front\"
interface = \"eth0\"
vrid = 51
priority = 256
virtual_ips = [\"10.0.0.100/24\"]

[[frontend]]
name = \"web\"
bind = \"10.0.0.100:80\"
backend = \"wbe\"

[[backend]]
name = \"web\"
algorithm = \"fastest\"
servers = [{ name = \"a\", address = \"10.0.1.10:8080\" }]

[cluster]
nodes = [{ name = \"lb1\", addresses = [\"10.0.0.1\"] }]
auth_key_file = \"/etc/halb/cluster.key\"
heartbeat_interval = \"0ms\"
";
    check(
        text,
        &[
            (
                3,
                20,
                "shutdown_timeout must be a duration such as \"10ms\" or \"1s\", got \"forever\"",
            ),
            (9, 12, "priority must be 1..=255, got 256"),
            (15, 11, "frontend 'web' names backend 'wbe' which does not exist"),
            (
                19,
                13,
                "algorithm must be one of: round-robin, weighted-round-robin, least-connections, p2c, maglev, random, got \"fastest\"",
            ),
            (25, 22, "heartbeat_interval must be at least 1ms, got \"0ms\""),
        ],
    );
}

#[test]
fn sample_file_with_errors_in_three_sections() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/multi_error.toml");
    let err = control::config::load(&path).expect_err("multi_error.toml is invalid");
    let file = path.display().to_string();
    let want = [
        format!(
            "{file}:4:18: metrics_listen must be an address with a port such as \"10.0.0.1:80\" or \"[2001:db8::1]:80\", got \"127.0.0.1\""
        ),
        format!("{file}:9:8: vrid must be 1..=255, got 300"),
        format!("{file}:15:11: frontend 'web' names backend 'wbe' which does not exist"),
        format!(
            "{file}:19:54: unknown key 'servers[0].wieght', expected one of: name, address, weight, max_connections, backup"
        ),
    ];
    assert_eq!(err.to_string(), want.join("\n"));
}

#[test]
fn sample_file_with_a_syntax_error() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/bad_syntax.toml");
    let err = control::config::load(&path).expect_err("bad_syntax.toml is invalid");
    let file = path.display().to_string();
    assert_eq!(
        err.to_string(),
        format!("{file}:2:12: invalid TOML: invalid basic string, expected `\"`")
    );
}

#[test]
fn sample_file_not_utf8() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/not_utf8.toml");
    let err = control::config::load(&path).expect_err("not_utf8.toml is invalid");
    let file = path.display().to_string();
    assert_eq!(
        err.to_string(),
        format!("{file}:2:11: file is not valid UTF-8")
    );
}

#[test]
fn unreadable_file_is_one_error_naming_the_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/does-not-exist.toml");
    let err = control::config::load(&path).expect_err("missing file");
    assert_eq!(err.errors.len(), 1);
    let e = &err.errors[0];
    assert_eq!(e.file, path.display().to_string());
    assert_eq!((e.line, e.col), (0, 0));
    assert!(
        e.message.starts_with("cannot read file: "),
        "message: {}",
        e.message
    );
    assert_eq!(err.to_string(), format!("{}: {}", e.file, e.message));
}

// ---------------------------------------------------------------- odd shapes

#[test]
fn empty_file() {
    check("", &[(1, 1, "missing required table [node]")]);
}

#[test]
fn integer_too_large_and_datetime_for_string() {
    check(
        "[node]\nname = 1979-05-27\nworker_threads = 99999999999999999999\n",
        &[
            (2, 8, "name must be a string, got datetime 1979-05-27"),
            (
                3,
                18,
                "worker_threads is out of range, got 99999999999999999999",
            ),
        ],
    );
}

#[test]
fn fence_device_of_wrong_shape() {
    check(
        "[node]\nname = \"lb1\"\n[cluster]\nnodes = [{ name = \"lb1\", addresses = [\"10.0.0.1\"] }]\nauth_key_file = \"/k\"\nfence_device = 5\n",
        &[(
            6,
            16,
            "cluster.fence_device must be an array of tables ([[cluster.fence_device]]), got 5",
        )],
    );
}

#[test]
fn unknown_key_in_hash_key_table() {
    check(
        &with_node(
            "[[backend]]\nname = \"b\"\nalgorithm = \"maglev\"\nhash_key = { header = \"X\", foo = 1 }\nservers = [{ name = \"a\", address = \"127.0.0.1:1\" }]\n",
        ),
        &[(
            6,
            28,
            "unknown key 'hash_key.foo', expected one of: header, cookie",
        )],
    );
}

#[test]
fn errors_under_a_sub_table_header() {
    check(
        &with_node(
            "[[frontend]]\nname = \"f\"\n[frontend.timeouts]\nconnect = 3\nfoo = 1\n",
        ),
        &[
            (3, 1, "missing required key 'bind'"),
            (3, 1, "missing required key 'backend'"),
            (
                6,
                11,
                "timeouts.connect must be a duration string such as \"10ms\" or \"1s\", got 3",
            ),
            (
                7,
                1,
                "unknown key 'timeouts.foo', expected one of: client_header, client_idle, connect, server, udp_idle",
            ),
        ],
    );
}

#[test]
fn array_element_that_is_not_a_table() {
    check(
        &with_node(
            "[[backend]]\nname = \"b\"\nservers = [{ name = \"a\", address = \"127.0.0.1:1\", weight = -1.5 }, 7]\n",
        ),
        &[
            (5, 60, "servers[0].weight must be an integer, got -1.5"),
            (5, 68, "servers[1] must be a table, got 7"),
        ],
    );
}

#[test]
fn vrrp_auth_pass_is_version_2_only_one_to_eight_bytes_and_never_echoed() {
    let text = with_node(concat!(
        "[[vrrp]]\nname = \"a\"\ninterface = \"eth0\"\nvrid = 1\n",
        "virtual_ips = [\"10.0.0.1\"]\nauth_pass = \"secret\"\n",
        "[[vrrp]]\nname = \"b\"\ninterface = \"eth0\"\nvrid = 2\nversion = 2\n",
        "virtual_ips = [\"10.0.0.2\"]\nauth_pass = \"123456789\"\n",
        "[[vrrp]]\nname = \"c\"\ninterface = \"eth0\"\nvrid = 3\nversion = 2\n",
        "virtual_ips = [\"10.0.0.3\"]\nauth_pass = \"\"\n",
    ));
    check(
        &text,
        &[
            (8, 13, "auth_pass is VRRPv2 authentication; version 3 adverts carry none (RFC 5798); set version = 2 or remove it"),
            (15, 13, "auth_pass is 9 bytes; VRRPv2 carries at most 8 (keepalived silently uses the first 8)"),
            (22, 13, "auth_pass must not be empty"),
        ],
    );
    let all: String = errors(&text).into_iter().map(|(_, _, m)| m).collect();
    assert!(
        !all.contains("secret") && !all.contains("123456789"),
        "{all}"
    );
}
