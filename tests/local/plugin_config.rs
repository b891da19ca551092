//! Checks the managed plugin's `config.json` against moby's plugin config
//! schema, plus rules of our own about what this plugin needs.
//!
//! Docker decodes `config.json` with Go's encoding/json into moby's
//! `PluginConfig` (moby/moby `api/types/plugin.go`, split into
//! `api/types/plugin/*.go` in newer trees). encoding/json silently drops keys
//! that have no field, so a misspelt `"destnation"` installs fine and the
//! mount simply has no destination. Nothing on Docker's side reports it, so
//! this test walks the JSON against a hand-written description of moby's
//! structs and refuses every key moby would ignore.
//!
//! encoding/json also matches keys to json tags case-insensitively (an exact
//! match first, then a case-folded one), so `"workdir"` fills `WorkDir`. The
//! walker therefore compares key names case-insensitively too; otherwise it
//! would reject configs Docker reads correctly, including ours, which uses
//! camelCase throughout.

use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::process::Command;

/// What JSON a moby Go field decodes from.
#[derive(Clone, Copy)]
enum Shape {
    /// Go `string` or `*string`.
    Str,
    /// Go `bool`.
    Bool,
    /// Go `uint32` (User.UID, User.GID): an integer literal in range.
    U32,
    /// Go `[]string`.
    Strings,
    /// A nested Go struct.
    Object(&'static [Field]),
    /// A Go slice of structs.
    Objects(&'static [Field]),
}

/// One field of a moby struct: its json tag and what it decodes from.
struct Field {
    key: &'static str,
    shape: Shape,
}

const fn field(key: &'static str, shape: Shape) -> Field {
    Field { key, shape }
}

// moby's structs, by json tag. Fields are listed as moby lists them (same
// tag spelling, including the lower-case `rootfs`, `type` and `diff_ids`).

/// `PluginConfig`.
const CONFIG: &[Field] = &[
    field("Args", Shape::Object(ARGS)),
    field("Description", Shape::Str),
    // Stamped in by `docker plugin create` itself; newer trees have dropped
    // the field, but every released engine so far has it.
    field("DockerVersion", Shape::Str),
    field("Documentation", Shape::Str),
    field("Entrypoint", Shape::Strings),
    field("Env", Shape::Objects(ENV)),
    field("Interface", Shape::Object(INTERFACE)),
    field("IpcHost", Shape::Bool),
    field("Linux", Shape::Object(LINUX)),
    field("Mounts", Shape::Objects(MOUNT)),
    field("Network", Shape::Object(NETWORK)),
    field("PidHost", Shape::Bool),
    field("PropagatedMount", Shape::Str),
    field("User", Shape::Object(USER)),
    field("WorkDir", Shape::Str),
    field("rootfs", Shape::Object(ROOTFS)),
];

/// `PluginConfigArgs`.
const ARGS: &[Field] = &[
    field("Description", Shape::Str),
    field("Name", Shape::Str),
    field("Settable", Shape::Strings),
    field("Value", Shape::Strings),
];

/// `PluginEnv`.
const ENV: &[Field] = &[
    field("Description", Shape::Str),
    field("Name", Shape::Str),
    field("Settable", Shape::Strings),
    field("Value", Shape::Str),
];

/// `PluginConfigInterface`. `Types` holds strings such as
/// `docker.volumedriver/1.0`, which moby parses into prefix, capability and
/// version (see [`parse_interface_type`]).
const INTERFACE: &[Field] = &[
    field("ProtocolScheme", Shape::Str),
    field("Socket", Shape::Str),
    field("Types", Shape::Strings),
];

/// `PluginConfigLinux`.
const LINUX: &[Field] = &[
    field("AllowAllDevices", Shape::Bool),
    field("Capabilities", Shape::Strings),
    field("Devices", Shape::Objects(DEVICE)),
];

/// `PluginDevice`.
const DEVICE: &[Field] = &[
    field("Description", Shape::Str),
    field("Name", Shape::Str),
    field("Path", Shape::Str),
    field("Settable", Shape::Strings),
];

/// `PluginMount`.
const MOUNT: &[Field] = &[
    field("Description", Shape::Str),
    field("Destination", Shape::Str),
    field("Name", Shape::Str),
    field("Options", Shape::Strings),
    field("Settable", Shape::Strings),
    field("Source", Shape::Str),
    field("Type", Shape::Str),
];

/// `PluginConfigNetwork`.
const NETWORK: &[Field] = &[field("Type", Shape::Str)];

/// `PluginConfigUser`.
const USER: &[Field] = &[field("GID", Shape::U32), field("UID", Shape::U32)];

/// `PluginConfigRootfs`.
const ROOTFS: &[Field] = &[field("diff_ids", Shape::Strings), field("type", Shape::Str)];

/// The only interface the binary serves.
const VOLUME_DRIVER: &str = "docker.volumedriver/1.0";

/// Where moby bind-mounts the plugin's runtime directory, in which it looks
/// for `interface.socket` (moby `plugin/v2/plugin.go`,
/// `defaultPluginRuntimeDestination`).
const PLUGIN_RUNTIME_DIR: &str = "/run/docker/plugins";

/// Every problem with `config`, one readable line each, starting with the
/// JSON path it is about.
fn check(config: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    walk_object(config, CONFIG, "$", &mut problems);
    check_interface(config, &mut problems);
    check_entrypoint(config, &mut problems);
    check_settings(config, &mut problems);
    check_env(config, &mut problems);
    check_mounts(config, &mut problems);
    check_propagated_mount(config, &mut problems);
    check_linux(config, &mut problems);
    check_network(config, &mut problems);
    problems
}

// ---- the schema walk ----------------------------------------------------

fn walk(value: &Value, shape: Shape, path: &str, problems: &mut Vec<String>) {
    match shape {
        Shape::Str if !value.is_string() => {
            problems.push(format!(
                "{path}: expected a string, found {}",
                describe(value)
            ));
        }
        Shape::Bool if !value.is_boolean() => {
            problems.push(format!(
                "{path}: expected a bool, found {}",
                describe(value)
            ));
        }
        Shape::U32 if value.as_u64().is_none_or(|n| n > u64::from(u32::MAX)) => {
            problems.push(format!(
                "{path}: expected an integer from 0 to {}, found {value}",
                u32::MAX
            ));
        }
        Shape::Strings => match value.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    if !item.is_string() {
                        problems.push(format!(
                            "{path}[{i}]: expected a string, found {}",
                            describe(item)
                        ));
                    }
                }
            }
            None => problems.push(format!(
                "{path}: expected an array of strings, found {}",
                describe(value)
            )),
        },
        Shape::Object(fields) => walk_object(value, fields, path, problems),
        Shape::Objects(fields) => match value.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk_object(item, fields, &format!("{path}[{i}]"), problems);
                }
            }
            None => problems.push(format!(
                "{path}: expected an array of objects, found {}",
                describe(value)
            )),
        },
        Shape::Str | Shape::Bool | Shape::U32 => {}
    }
}

fn walk_object(value: &Value, fields: &[Field], path: &str, problems: &mut Vec<String>) {
    let Some(map) = value.as_object() else {
        problems.push(format!(
            "{path}: expected an object, found {}",
            describe(value)
        ));
        return;
    };
    // moby key -> the spelling that set it, to catch two spellings of one key.
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (key, item) in map {
        let Some(f) = fields.iter().find(|f| f.key.eq_ignore_ascii_case(key)) else {
            problems.push(unknown_key(path, key, fields));
            continue;
        };
        if let Some(first) = seen.insert(f.key, key) {
            // Go would keep whichever comes last in the file, silently.
            problems.push(format!(
                "{path}: {first:?} and {key:?} both set moby's {}; Docker keeps only one of them",
                f.key
            ));
        }
        let item_path = format!("{path}.{key}");
        if item.is_null() {
            // Go leaves the field at its zero value, as if the key were absent,
            // which is never what a null in our config would mean.
            problems.push(format!(
                "{item_path}: null, which Docker treats as if the key were absent"
            ));
        } else {
            walk(item, f.shape, &item_path, problems);
        }
    }
}

fn unknown_key(path: &str, key: &str, fields: &[Field]) -> String {
    let keys: Vec<&str> = fields.iter().map(|f| f.key).collect();
    let mut message = format!(
        "{path}: unknown key {key:?} (moby's keys here: {}); Docker would silently ignore it",
        keys.join(", ")
    );
    let lower = key.to_ascii_lowercase();
    if let Some(near) = keys
        .iter()
        .find(|k| edit_distance(&k.to_ascii_lowercase(), &lower) <= 2)
    {
        message.push_str(&format!("; did you mean {near:?}?"));
    }
    message
}

/// Levenshtein distance, for the "did you mean" hint.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---- our own rules --------------------------------------------------------
//
// These read values the way Docker does (keys case-insensitively) and skip
// values of the wrong JSON type, which the walk has already reported.

/// The value `obj` has for moby's `key`, with its JSON path.
fn get<'a>(obj: &'a Value, key: &str, path: &str) -> Option<(String, &'a Value)> {
    obj.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(k, v)| (format!("{path}.{k}"), v))
}

fn get_str<'a>(obj: &'a Value, key: &str, path: &str) -> Option<(String, &'a str)> {
    let (path, value) = get(obj, key, path)?;
    Some((path, value.as_str()?))
}

/// The elements of the array under `key`, each with its JSON path.
fn items<'a>(obj: &'a Value, key: &str, path: &str) -> Vec<(String, &'a Value)> {
    match get(obj, key, path) {
        Some((path, Value::Array(items))) => items
            .iter()
            .enumerate()
            .map(|(i, item)| (format!("{path}[{i}]"), item))
            .collect(),
        _ => Vec::new(),
    }
}

/// Splits an interface type the way moby does: the version follows the first
/// `/`, and the last `.` before it separates prefix from capability.
fn parse_interface_type(s: &str) -> (&str, &str, &str) {
    let (qualified, version) = s.split_once('/').unwrap_or((s, ""));
    let (prefix, capability) = qualified.rsplit_once('.').unwrap_or(("", qualified));
    (prefix, capability, version)
}

fn check_interface(config: &Value, problems: &mut Vec<String>) {
    let Some((path, interface)) = get(config, "Interface", "$") else {
        problems.push("$: no \"interface\", so Docker cannot talk to the plugin".into());
        return;
    };
    match get(interface, "Types", &path) {
        Some((types_path, Value::Array(types))) => {
            // Docker would send requests for any interface listed, and the
            // binary only speaks the volume driver protocol.
            for (i, t) in types.iter().enumerate() {
                if let Some(s) = t.as_str()
                    && s != VOLUME_DRIVER
                {
                    let (prefix, capability, version) = parse_interface_type(s);
                    problems.push(format!(
                        "{types_path}[{i}]: {s:?} (prefix {prefix:?}, capability {capability:?}, version {version:?}) is not an interface this binary serves; it serves only {VOLUME_DRIVER:?}"
                    ));
                }
            }
            if !types.iter().any(|t| t.as_str() == Some(VOLUME_DRIVER)) {
                problems.push(format!(
                    "{types_path}: does not contain {VOLUME_DRIVER:?}, so Docker would never use the plugin as a volume driver"
                ));
            }
        }
        Some(_) => {}
        None => problems.push(format!(
            "{path}: no \"types\"; it must list {VOLUME_DRIVER:?}"
        )),
    }
    match get_str(interface, "Socket", &path) {
        Some((socket_path, socket)) => {
            let stem = socket.strip_suffix(".sock").unwrap_or("");
            if stem.is_empty() || socket.contains('/') {
                problems.push(format!(
                    "{socket_path}: {socket:?} must be a bare file name ending in .sock; moby looks for it in {PLUGIN_RUNTIME_DIR}"
                ));
            } else {
                // The binary is told where to listen through OSV_SOCKET; it
                // must be where moby will dial.
                let expected = format!("{PLUGIN_RUNTIME_DIR}/{socket}");
                for (env_path, env) in items(config, "Env", "$") {
                    if get_str(env, "Name", "").is_some_and(|(_, n)| n == "OSV_SOCKET")
                        && let Some((value_path, value)) = get_str(env, "Value", &env_path)
                        && value != expected
                    {
                        problems.push(format!(
                            "{value_path}: OSV_SOCKET is {value:?} but moby dials {expected:?} ({socket_path})"
                        ));
                    }
                }
            }
        }
        None if get(interface, "Socket", &path).is_none() => {
            problems.push(format!("{path}: no \"socket\""));
        }
        None => {}
    }
}

fn check_entrypoint(config: &Value, problems: &mut Vec<String>) {
    match get(config, "Entrypoint", "$") {
        Some((path, Value::Array(args))) => match args.first() {
            None => problems.push(format!("{path}: empty; the plugin would run nothing")),
            Some(Value::String(exe)) if !exe.starts_with('/') => problems.push(format!(
                "{path}[0]: {exe:?} must be an absolute path (the plugin image has no useful PATH lookup to rely on)"
            )),
            Some(_) => {}
        },
        Some(_) => {}
        None => problems.push("$: no \"entrypoint\"; the plugin would run nothing".into()),
    }
}

/// Settable fields per kind of setting, as moby's `plugin/v2/settable.go`
/// allows them, and the keys under which config.json holds each kind.
fn check_settings(config: &Value, problems: &mut Vec<String>) {
    let mut settings: Vec<(&str, &str, String, &Value)> = Vec::new();
    for (path, env) in items(config, "Env", "$") {
        settings.push(("an env", "value", path, env));
    }
    for (path, mount) in items(config, "Mounts", "$") {
        settings.push(("a mount", "source", path, mount));
    }
    if let Some((linux_path, linux)) = get(config, "Linux", "$") {
        for (path, device) in items(linux, "Devices", &linux_path) {
            settings.push(("a device", "path", path, device));
        }
    }
    if let Some((path, args)) = get(config, "Args", "$") {
        settings.push(("the args", "value", path, args));
    }

    // `docker plugin set NAME=…` looks NAME up among env, then mounts, then
    // devices, then args, and stops at the first match: a second setting of
    // the same name could never be set.
    let mut names: HashMap<&str, String> = HashMap::new();
    for (kind, allowed, path, setting) in &settings {
        let name = get_str(setting, "Name", path).map(|(_, n)| n);
        if let Some(name) = name.filter(|n| !n.is_empty())
            && let Some(first) = names.insert(name, path.clone())
        {
            problems.push(format!(
                "{path}: name {name:?} is already used at {first}; `docker plugin set` would only ever reach the first"
            ));
        }
        for (entry_path, entry) in items(setting, "Settable", path) {
            let Some(entry) = entry.as_str() else {
                continue;
            };
            // moby compares these exactly, so "Value" is as wrong as "path".
            if entry != *allowed {
                problems.push(format!(
                    "{entry_path}: {entry:?} is not settable on {kind}; moby allows only {allowed:?} there"
                ));
            } else if name.is_none_or(str::is_empty) {
                problems.push(format!(
                    "{path}: settable but has no name, so `docker plugin set` cannot address it"
                ));
            }
        }
    }
}

fn check_env(config: &Value, problems: &mut Vec<String>) {
    for (path, env) in items(config, "Env", "$") {
        match get_str(env, "Name", &path) {
            Some((name_path, name)) if name.is_empty() || name.contains('=') => {
                problems.push(format!(
                    "{name_path}: {name:?} is not an environment variable name"
                ));
            }
            Some(_) => {}
            None => problems.push(format!("{path}: no \"name\"")),
        }
        // moby passes an env to the plugin only if it has a value.
        if get(env, "Value", &path).is_none() {
            problems.push(format!(
                "{path}: no \"value\", so Docker would not set the variable at all"
            ));
        }
    }
}

fn check_mounts(config: &Value, problems: &mut Vec<String>) {
    let mut destinations: HashMap<&str, String> = HashMap::new();
    for (path, mount) in items(config, "Mounts", "$") {
        match get_str(mount, "Name", &path) {
            Some((name_path, "")) => problems.push(format!("{name_path}: empty")),
            Some(_) => {}
            None => problems.push(format!("{path}: no \"name\"")),
        }
        match get_str(mount, "Source", &path) {
            Some((source_path, source)) if !is_absolute_normalised(source) => {
                problems.push(format!(
                    "{source_path}: {source:?} must be an absolute, normalised host path"
                ));
            }
            Some(_) => {}
            None => problems.push(format!(
                "{path}: no \"source\"; moby refuses to start a plugin with a source-less mount"
            )),
        }
        match get_str(mount, "Destination", &path) {
            Some((destination_path, destination)) if !is_absolute_normalised(destination) => {
                problems.push(format!(
                    "{destination_path}: {destination:?} must be an absolute, normalised path"
                ));
            }
            Some((destination_path, destination)) => {
                if let Some(first) = destinations.insert(destination, destination_path.clone()) {
                    problems.push(format!(
                        "{destination_path}: {destination:?} is already mounted by {first}"
                    ));
                }
            }
            None => problems.push(format!("{path}: no \"destination\"")),
        }
        match get_str(mount, "Type", &path) {
            Some((_, "bind")) => {}
            Some((type_path, other)) => problems.push(format!(
                "{type_path}: {other:?}; every mount of this plugin is a \"bind\" mount of a host path"
            )),
            None => problems.push(format!("{path}: no \"type\"; it must be \"bind\"")),
        }
    }
}

/// `propagatedMount` is where the plugin makes volume mounts that Docker then
/// sees on the host. A bind mount at, above or below it would shadow those
/// mounts or leak them into a host directory.
fn check_propagated_mount(config: &Value, problems: &mut Vec<String>) {
    let Some((path, propagated)) = get_str(config, "PropagatedMount", "$") else {
        if get(config, "PropagatedMount", "$").is_none() {
            problems.push(
                "$: no \"propagatedMount\"; Docker would not see the volumes the plugin mounts"
                    .into(),
            );
        }
        return;
    };
    if !is_absolute_normalised(propagated) || propagated == "/" {
        problems.push(format!(
            "{path}: {propagated:?} must be an absolute, normalised path other than /"
        ));
        return;
    }
    // moby adds its own runtime mount next to ours.
    let mut destinations = vec![(
        format!("moby's runtime mount {PLUGIN_RUNTIME_DIR}"),
        PLUGIN_RUNTIME_DIR,
    )];
    for (mount_path, mount) in items(config, "Mounts", "$") {
        if let Some((destination_path, destination)) = get_str(mount, "Destination", &mount_path) {
            destinations.push((destination_path, destination));
        }
    }
    for (destination_path, destination) in destinations {
        if within(propagated, destination) || within(destination, propagated) {
            problems.push(format!(
                "{path}: {propagated:?} is, contains or is inside {destination:?} ({destination_path})"
            ));
        }
    }
}

fn check_linux(config: &Value, problems: &mut Vec<String>) {
    let Some((path, linux)) = get(config, "Linux", "$") else {
        problems.push("$: no \"linux\"; the plugin needs CAP_SYS_ADMIN to mount".into());
        return;
    };
    let capabilities = items(linux, "Capabilities", &path);
    for (cap_path, cap) in &capabilities {
        // moby copies them verbatim into the OCI spec, whose names carry the
        // CAP_ prefix.
        if let Some(cap) = cap.as_str()
            && !cap.starts_with("CAP_")
        {
            problems.push(format!("{cap_path}: {cap:?} must start with CAP_"));
        }
    }
    if !capabilities
        .iter()
        .any(|(_, cap)| cap.as_str() == Some("CAP_SYS_ADMIN"))
    {
        problems.push(format!(
            "{path}: capabilities lack CAP_SYS_ADMIN, without which the plugin cannot mount volumes"
        ));
    }
}

fn check_network(config: &Value, problems: &mut Vec<String>) {
    // Object-storage volumes reach their endpoints over the network; moby
    // only shares the host's network for "host" and otherwise leaves the
    // plugin in a namespace of its own.
    match get(config, "Network", "$").and_then(|(path, network)| get(network, "Type", &path)) {
        Some((_, Value::String(t))) if t == "host" => {}
        Some((path, Value::String(other))) => {
            problems.push(format!("{path}: {other:?}; it must be \"host\""));
        }
        Some(_) => {}
        None => problems.push("$: no network.type; it must be \"host\"".into()),
    }
}

/// `/`, or `/a/b` with no empty, `.` or `..` components.
fn is_absolute_normalised(p: &str) -> bool {
    p == "/"
        || p.strip_prefix('/').is_some_and(|rest| {
            rest.split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..")
        })
}

/// Whether `inner` is `outer` or a path below it.
fn within(inner: &str, outer: &str) -> bool {
    outer == "/"
        || inner == outer
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('/'))
}

// ---- tests ---------------------------------------------------------------

fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The config the plugin is built with.
fn real_config() -> Value {
    load(concat!(env!("CARGO_MANIFEST_DIR"), "/config.json"))
}

/// A frozen copy of config.json for the mutation tests, so that their JSON
/// paths (`$.env[7]`, `$.mounts[1]`) stay put while config.json evolves.
fn base_config() -> Value {
    load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/plugin_config/base.json"
    ))
}

fn object<'a>(config: &'a mut Value, pointer: &str) -> &'a mut Map<String, Value> {
    config
        .pointer_mut(pointer)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("config.json has no object at {pointer}"))
}

/// Renames the key `from` of the object at `pointer` (a JSON pointer).
fn rename(config: &mut Value, pointer: &str, from: &str, to: &str) {
    let obj = object(config, pointer);
    let value = obj
        .remove(from)
        .unwrap_or_else(|| panic!("config.json has no {from:?} at {pointer}"));
    obj.insert(to.to_string(), value);
}

fn set(config: &mut Value, pointer: &str, key: &str, value: Value) {
    object(config, pointer).insert(key.to_string(), value);
}

fn listing(problems: &[String]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn real_config_matches_mobys_schema_and_our_rules() {
    let problems = check(&real_config());
    assert!(
        problems.is_empty(),
        "config.json has problems:\n{}",
        listing(&problems)
    );
}

#[test]
fn mistakes_are_reported_with_their_path() {
    type Mutation = fn(&mut Value);
    let cases: &[(&str, Mutation, &[&str])] = &[
        (
            "misspelt top-level key",
            |c| rename(c, "", "entrypoint", "entrypiont"),
            &[
                "$: unknown key \"entrypiont\"",
                "did you mean \"Entrypoint\"?",
            ],
        ),
        (
            "misspelt key in a mount",
            |c| rename(c, "/mounts/1", "destination", "destnation"),
            &["$.mounts[1]: unknown key \"destnation\"", "Destination"],
        ),
        (
            "misspelt key in an env",
            |c| rename(c, "/env/5", "settable", "setable"),
            &["$.env[5]: unknown key \"setable\""],
        ),
        (
            "entrypoint as one string",
            |c| set(c, "", "entrypoint", json!("/opensandbox-volume supervise")),
            &["$.entrypoint: expected an array of strings, found a string"],
        ),
        (
            "settable value on a mount",
            |c| set(c, "/mounts/0", "settable", json!(["value"])),
            &["$.mounts[0].settable[0]: \"value\" is not settable on a mount"],
        ),
        (
            "unknown interface type",
            |c| set(c, "/interface", "types", json!(["docker.volumdriver/1.0"])),
            &[
                "$.interface.types[0]: \"docker.volumdriver/1.0\" (prefix \"docker\", capability \"volumdriver\", version \"1.0\")",
                "$.interface.types: does not contain \"docker.volumedriver/1.0\"",
            ],
        ),
        (
            "relative propagatedMount",
            |c| set(c, "", "propagatedMount", json!("mounts")),
            &["$.propagatedMount: \"mounts\" must be an absolute"],
        ),
        (
            "propagatedMount inside a mount",
            |c| set(c, "", "propagatedMount", json!("/state/mounts")),
            &[
                "$.propagatedMount: \"/state/mounts\" is, contains or is inside \"/state\" ($.mounts[0].destination)",
            ],
        ),
        (
            "propagatedMount containing a mount",
            |c| set(c, "/mounts/2", "destination", json!("/mounts/host")),
            &[
                "$.propagatedMount: \"/mounts\" is, contains or is inside \"/mounts/host\" ($.mounts[2].destination)",
            ],
        ),
        (
            "socket with a directory",
            |c| {
                set(
                    c,
                    "/interface",
                    "socket",
                    json!("/run/docker/plugins/opensandbox.sock"),
                )
            },
            &[
                "$.interface.socket: \"/run/docker/plugins/opensandbox.sock\" must be a bare file name",
            ],
        ),
        (
            "OSV_SOCKET not where moby dials",
            |c| set(c, "/interface", "socket", json!("osv.sock")),
            &[
                "$.env[0].value: OSV_SOCKET is \"/run/docker/plugins/opensandbox.sock\" but moby dials \"/run/docker/plugins/osv.sock\"",
            ],
        ),
        (
            "relative entrypoint",
            |c| {
                set(
                    c,
                    "",
                    "entrypoint",
                    json!(["opensandbox-volume", "supervise"]),
                )
            },
            &["$.entrypoint[0]: \"opensandbox-volume\" must be an absolute path"],
        ),
        (
            "empty entrypoint",
            |c| set(c, "", "entrypoint", json!([])),
            &["$.entrypoint: empty"],
        ),
        (
            "control: an env renamed to a fresh name",
            |c| set(c, "/env/7", "name", json!("OSV_LOG_LEVEL_X")),
            &[],
        ),
        (
            "env name used twice",
            |c| set(c, "/env/6", "name", json!("OSV_LOG_LEVEL")),
            &["$.env[7]: name \"OSV_LOG_LEVEL\" is already used at $.env[6]"],
        ),
        (
            "env without a value",
            |c| {
                object(c, "/env/7").remove("value");
            },
            &["$.env[7]: no \"value\""],
        ),
        (
            "env value of the wrong type",
            |c| set(c, "/env/7", "value", json!(3)),
            &["$.env[7].value: expected a string, found a number"],
        ),
        (
            "settable Value with a capital, which moby compares exactly",
            |c| set(c, "/env/7", "settable", json!(["Value"])),
            &["$.env[7].settable[0]: \"Value\" is not settable on an env"],
        ),
        (
            "mount of another type",
            |c| set(c, "/mounts/1", "type", json!("volume")),
            &["$.mounts[1].type: \"volume\""],
        ),
        (
            "mount without a source",
            |c| {
                object(c, "/mounts/1").remove("source");
            },
            &["$.mounts[1]: no \"source\""],
        ),
        (
            "relative mount destination",
            |c| set(c, "/mounts/1", "destination", json!("credentials")),
            &["$.mounts[1].destination: \"credentials\" must be an absolute"],
        ),
        (
            "capability without CAP_",
            |c| set(c, "/linux", "capabilities", json!(["SYS_ADMIN"])),
            &[
                "$.linux.capabilities[0]: \"SYS_ADMIN\" must start with CAP_",
                "lack CAP_SYS_ADMIN",
            ],
        ),
        (
            "device path settable as value",
            |c| set(c, "/linux/devices/0", "settable", json!(["value"])),
            &["$.linux.devices[0].settable[0]: \"value\" is not settable on a device"],
        ),
        (
            "bridge network",
            |c| set(c, "/network", "type", json!("bridge")),
            &["$.network.type: \"bridge\""],
        ),
        (
            "one key spelt twice",
            |c| set(c, "", "Entrypoint", json!(["/opensandbox-volume"])),
            &["both set moby's Entrypoint"],
        ),
        (
            "null",
            |c| set(c, "", "workdir", Value::Null),
            &["$.workdir: null"],
        ),
        (
            "negative uid",
            |c| set(c, "", "user", json!({"uid": -1})),
            &["$.user.uid: expected an integer from 0 to 4294967295, found -1"],
        ),
    ];

    let base = check(&base_config());
    assert!(
        base.is_empty(),
        "the unmutated base.json must pass:\n{}",
        listing(&base)
    );
    let mut failures = Vec::new();
    for (what, mutate, expected) in cases {
        let mut config = base_config();
        mutate(&mut config);
        let problems = check(&config);
        if expected.is_empty() {
            // A control: a harmless change must not be reported.
            if !problems.is_empty() {
                failures.push(format!(
                    "{what}: expected no problems, got:\n{}",
                    listing(&problems)
                ));
            }
            continue;
        }
        for needle in *expected {
            if !problems.iter().any(|p| p.contains(needle)) {
                failures.push(format!(
                    "{what}: no problem mentions {needle:?}; got:\n{}",
                    listing(&problems)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn keys_match_mobys_tags_in_any_case_as_go_does() {
    let mut config = base_config();
    rename(&mut config, "", "entrypoint", "Entrypoint");
    rename(&mut config, "", "propagatedMount", "PROPAGATEDMOUNT");
    rename(&mut config, "", "workdir", "WorkDir");
    rename(&mut config, "/mounts/0", "destination", "Destination");
    rename(&mut config, "/env/5", "settable", "Settable");
    rename(&mut config, "/interface", "types", "TYPES");
    set(
        &mut config,
        "",
        "Rootfs",
        json!({"Type": "layers", "DIFF_IDS": []}),
    );
    let problems = check(&config);
    assert!(
        problems.is_empty(),
        "keys in another case were refused:\n{}",
        listing(&problems)
    );
}

#[test]
fn every_osv_env_is_one_the_binary_reads() {
    let output = Command::new(env!("CARGO_BIN_EXE_opensandbox-volume"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "serve --help failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Collapse whitespace so a wrapped help line still matches.
    let help = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    // clap prints `[env: NAME=VALUE]`, or `[env: NAME]` with hide_env_values.
    let understood = |name: &str| {
        help.contains(&format!("[env: {name}=")) || help.contains(&format!("[env: {name}]"))
    };

    let config = real_config();
    let mut unknown = Vec::new();
    for (path, env) in items(&config, "Env", "$") {
        let Some((_, name)) = get_str(env, "Name", &path) else {
            continue;
        };
        if !name.starts_with("OSV_") || understood(name) {
            continue;
        }
        unknown.push(format!("{path}: {name}"));
    }
    assert!(
        unknown.is_empty(),
        "config.json sets env the binary does not read (not in `serve --help`):\n  {}",
        unknown.join("\n  ")
    );
}
