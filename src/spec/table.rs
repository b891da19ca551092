//! THE option table: every volume option declared once, with the types that
//! accept it, its value type, default, help sentence and error wording.
//!
//! Everything that lists option names is derived from [`OPTIONS`]: the
//! parser's accepted options (and the "accepted options: …" list of its
//! error), [`option_names`], the per-backend field lists of `translate`,
//! and the option tables of docs/OPTIONS.md (a unit test in `spec::docs`
//! fails when they disagree). A new option is one entry here plus its use
//! (where the parser reads it and where the mount uses it).

/// A volume type (the `type` option), as OpenSandbox names its backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeType {
    Host,
    Pvc,
    Ossfs,
    S3,
    Nfs,
}

impl VolumeType {
    /// Every type, in the order messages list them.
    pub const ALL: [VolumeType; 5] = [
        VolumeType::Host,
        VolumeType::Pvc,
        VolumeType::Ossfs,
        VolumeType::S3,
        VolumeType::Nfs,
    ];

    /// The `type=` value.
    pub const fn name(self) -> &'static str {
        match self {
            VolumeType::Host => "host",
            VolumeType::Pvc => "pvc",
            VolumeType::Ossfs => "ossfs",
            VolumeType::S3 => "s3",
            VolumeType::Nfs => "nfs",
        }
    }

    /// The type named `name` (already trimmed and lowercased).
    pub fn from_name(name: &str) -> Option<VolumeType> {
        VolumeType::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// Every backend type the OpenSandbox volume model names; the plugin
/// serves them all.
pub const ALL_TYPES: &[&str] = &[
    VolumeType::Host.name(),
    VolumeType::Pvc.name(),
    VolumeType::Ossfs.name(),
    VolumeType::S3.name(),
    VolumeType::Nfs.name(),
];

/// What an option's value is (what `translate` expects in the API's JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// A string.
    Text,
    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
    Bool,
    /// Seconds, fractions allowed (a JSON number in the API).
    Seconds,
    /// A numeric id (a JSON integer in the API).
    Id,
    /// An octal mode (a string in the API, so `0022` keeps its digits).
    Octal,
    /// A number of bytes, with a unit or none (a string in the API:
    /// `"2GiB"`).
    Size,
    /// Comma-separated items (a list of strings in the API).
    List,
    /// Comma-separated items (a string or a list of strings in the API).
    ListOrText,
}

/// Which types accept an option.
#[derive(Debug, Clone, Copy)]
pub enum Types {
    /// Every type, listed before the type's own options.
    Every,
    /// These types only.
    Only(&'static [On]),
}

/// One type that accepts an option.
#[derive(Debug, Clone, Copy)]
pub struct On {
    pub ty: VolumeType,
    /// Place in the type's list of its own options (the order of the
    /// "accepted options: …" error), counted from 0 after the common ones.
    pub place: u8,
    /// A field of the type's struct in the Lifecycle API's volume JSON
    /// (what `translate` accepts); `false`: a plugin option only.
    pub api: bool,
}

/// `ty` accepts the option, and so does the API's JSON.
const fn api(ty: VolumeType, place: u8) -> On {
    On {
        ty,
        place,
        api: true,
    }
}

/// `ty` accepts the option, the API's JSON does not.
const fn plugin(ty: VolumeType, place: u8) -> On {
    On {
        ty,
        place,
        api: false,
    }
}

/// A refusal shown in docs/OPTIONS.md: the sentence is the parser's own,
/// produced from a minimal volume of the type with this value.
#[derive(Debug, Clone, Copy)]
pub struct Bad {
    /// When it happens (`missing`, `otherwise`, …); empty: nothing to say.
    pub when: &'static str,
    /// The option's value; `None`: the option left out.
    pub value: Option<&'static str>,
}

/// One volume option.
#[derive(Debug, Clone, Copy)]
pub struct VolumeOption {
    /// The documented spelling (keys match case-insensitively).
    pub name: &'static str,
    pub types: Types,
    pub value: ValueType,
    /// Must be given (and not empty).
    pub required: bool,
    /// Markdown: what happens when it is left out.
    pub default: &'static str,
    /// Markdown: the values it takes and what they do.
    pub help: &'static str,
    /// How a required option is set, for its "is required" error.
    pub example: &'static str,
    /// What a good value looks like, for its "must be …" error.
    pub expected: &'static str,
    /// Refusals to show in the docs, each rendered by the parser.
    pub bad: &'static [Bad],
    /// Markdown: refusals made elsewhere (at Mount, by the backend), or a
    /// pointer to where they are described.
    pub more: &'static str,
}

impl VolumeOption {
    /// Whether `ty` accepts it (a common option: at place 0, and not a
    /// field of the API's backend struct).
    pub fn on(&self, ty: VolumeType) -> Option<On> {
        match self.types {
            Types::Every => Some(plugin(ty, 0)),
            Types::Only(on) => on.iter().find(|o| o.ty == ty).copied(),
        }
    }
}

/// Fields of a row that most rows leave empty.
const ROW: VolumeOption = VolumeOption {
    name: "",
    types: Types::Every,
    value: ValueType::Text,
    required: false,
    default: "",
    help: "",
    example: "",
    expected: "",
    bad: &[],
    more: "",
};

const fn bad(when: &'static str, value: &'static str) -> Bad {
    Bad {
        when,
        value: Some(value),
    }
}

const fn missing(when: &'static str) -> Bad {
    Bad { when, value: None }
}

use VolumeType::{Host, Nfs, Ossfs, Pvc, S3};

const SEE_CREDENTIALS: &str = "see [Credentials](#credentials-of-s3-and-ossfs-volumes)";

/// The table. Row order is the order of the docs' tables and of
/// `translate`'s fields (the Lifecycle API's order).
pub const OPTIONS: &[VolumeOption] = &[
    // ---- every type ----
    VolumeOption {
        name: "type",
        required: true,
        help: "`host`, `pvc`, `ossfs`, `s3`, `nfs`",
        default: "— (required)",
        bad: &[missing("missing"), bad("unknown", "ftp")],
        ..ROW
    },
    VolumeOption {
        name: "subPath",
        help: "relative path inside the volume, e.g. `work/run1`; normalised as the OpenSandbox server joins it: empty and `.` components are dropped (`a/./b//` = `a/b`; empty or `.` = whole volume). For `s3`/`ossfs` it is appended to the key prefix.",
        default: "whole volume",
        bad: &[bad(
            "absolute, a `..` component, NUL, a component over 255 bytes",
            "../x",
        )],
        more: "for `host`, at Mount, a component that is a symlink or a file: ``option `subPath`=\"a\" is refused: \"a\" is a symlink or not a directory, …``",
        ..ROW
    },
    VolumeOption {
        name: "readOnly",
        value: ValueType::Bool,
        help: "`true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`)",
        default: "`false`",
        bad: &[bad("anything else", "maybe")],
        ..ROW
    },
    // ---- host ----
    VolumeOption {
        name: "path",
        types: Types::Only(&[api(Host, 0)]),
        required: true,
        help: "absolute, normalised host directory, e.g. `/srv/sandboxes/a`",
        default: "— (required)",
        bad: &[
            missing("missing or empty"),
            bad(
                "relative or not normalised (`.`, `..`, `//`, trailing `/`)",
                "/a/../b",
            ),
        ],
        more: "no allowed prefixes configured: ``host volumes are disabled on this plugin because no allowed host paths are configured; start it with --allowed-host-paths …``; outside every allowed prefix after resolving symlinks: ``option `path`=\"/srv/x\" resolves to \"/etc\", which is outside the allowed host paths (/srv/sandboxes); …``; not on the host: ``option `path`=\"…\" does not exist on the host; create the directory first``; a file: ``… is not a directory on the host …``",
        ..ROW
    },
    // ---- pvc ----
    VolumeOption {
        name: "claimName",
        types: Types::Only(&[api(Pvc, 0)]),
        required: true,
        help: "the named volume, named as the OpenSandbox server names claims (a Kubernetes resource name): 1–253 lowercase letters, digits and `-`, starting and ending with a letter or digit. Docker's local driver takes names of 2 characters or more, so a missing one-character claim cannot be created",
        default: "— (required)",
        example: "claimName=team-data",
        bad: &[missing("missing"), bad("otherwise", "Team_Data")],
        more: "the volume's own name: ``a pvc volume cannot claim itself (claimName=\"x\"); name another volume``",
        ..ROW
    },
    VolumeOption {
        name: "createIfNotExists",
        types: Types::Only(&[api(Pvc, 1)]),
        value: ValueType::Bool,
        help: "`true`: a claim that does not exist at the first Mount is created, as a volume of Docker's `local` driver labelled `opensandbox.io/volume-managed-by=opensandbox-volume`; `false`: a missing claim fails the Mount",
        default: "`true` (the API's default)",
        bad: &[bad("", "maybe")],
        ..ROW
    },
    VolumeOption {
        name: "deleteOnSandboxTermination",
        types: Types::Only(&[api(Pvc, 2)]),
        value: ValueType::Bool,
        help: "`true`: when this volume is removed (an anonymous volume goes with its container: `docker run --rm`, `docker rm -v`) and no other pvc volume of the plugin names the claim, the claim is removed too, only if its label says the plugin created it; a claim the plugin did not create is never removed",
        default: "`false`",
        bad: &[bad("", "maybe")],
        ..ROW
    },
    // ---- nfs ----
    VolumeOption {
        name: "server",
        types: Types::Only(&[api(Nfs, 0)]),
        required: true,
        help: "host name, IPv4 address, or IPv6 address in brackets (`[fd00::1]`)",
        default: "— (required)",
        example: "server=nfs.example.com",
        bad: &[missing("missing"), bad("otherwise", "a b")],
        ..ROW
    },
    VolumeOption {
        name: "path",
        types: Types::Only(&[api(Nfs, 1)]),
        required: true,
        help: "the export's absolute, normalised path",
        default: "— (required)",
        example: "path=/exports/team",
        bad: &[missing("missing"), bad("otherwise", "x")],
        ..ROW
    },
    VolumeOption {
        name: "options",
        types: Types::Only(&[api(Nfs, 2)]),
        value: ValueType::ListOrText,
        help: "comma-separated, each `name` or `name=value` (letters, digits, `.`, `_`, `-`), names from the list the first error quotes (`vers`, `hard`, `timeo`, `nconnect`, …)",
        default: "none",
        bad: &[
            bad("an unlisted option", "hard,fsc"),
            bad("a malformed item", "a b"),
        ],
        ..ROW
    },
    // ---- s3 and ossfs ----
    VolumeOption {
        name: "bucket",
        types: Types::Only(&[api(S3, 0)]),
        required: true,
        help: "bucket name: 3–63 lowercase letters, digits, `.` and `-`, starting and ending with a letter or digit, no `..`, not an IPv4 address such as `192.168.5.4`",
        default: "— (required)",
        example: "bucket=my-bucket",
        bad: &[missing("missing or empty"), bad("otherwise", "My_Bucket")],
        ..ROW
    },
    VolumeOption {
        name: "bucket",
        types: Types::Only(&[api(Ossfs, 0)]),
        required: true,
        help: "OSS bucket name: 3–63 lowercase letters, digits and `-`, starting and ending with a letter or digit",
        default: "— (required)",
        example: "bucket=my-bucket",
        bad: &[missing("missing or empty"), bad("otherwise", "a.b")],
        ..ROW
    },
    VolumeOption {
        name: "endpoint",
        types: Types::Only(&[api(S3, 1)]),
        help: "host name or URL, scheme optional (`http` or `https`; https when absent), optional port and path: `http://127.0.0.1:9000`, `s3.us-west-2.amazonaws.com`, `oss-cn-hangzhou.aliyuncs.com`. An Alibaba OSS native endpoint (`oss-REGION[-internal].aliyuncs.com`) is mapped to OSS's S3-compatible host and gives the region. Surrounding spaces are dropped.",
        default: "AWS S3 for the region",
        bad: &[
            bad("empty", ""),
            bad(
                "with `user@` (the value is not repeated)",
                "http://user:password@minio:9000",
            ),
            bad("otherwise", "ftp://x"),
        ],
        more: "the reason in parentheses being one of: the scheme must be http or https; it has no host; the port is not a number; it contains spaces or control characters; it must not have a query or fragment; the host name has characters a host name cannot have; unclosed '['; the bracketed host is not an IPv6 address; junk after ']'",
        ..ROW
    },
    VolumeOption {
        name: "endpoint",
        types: Types::Only(&[api(Ossfs, 1)]),
        required: true,
        help: "OSS endpoint, e.g. `oss-cn-hangzhou.aliyuncs.com` or `oss-cn-hangzhou-internal.aliyuncs.com` (mapped to OSS's S3-compatible host; the region is taken from it), or any endpoint `type=s3` accepts",
        default: "— (required)",
        example: "endpoint=oss-cn-hangzhou.aliyuncs.com",
        bad: &[missing("missing or empty")],
        more: "otherwise the `endpoint` errors of `type=s3`",
        ..ROW
    },
    VolumeOption {
        name: "region",
        types: Types::Only(&[api(S3, 2), plugin(Ossfs, 9)]),
        help: "letters, digits and `-`, at most 64, e.g. `us-west-2`",
        default: "from an OSS endpoint, else `us-east-1`",
        bad: &[bad("empty", ""), bad("otherwise", "us east")],
        ..ROW
    },
    VolumeOption {
        name: "prefix",
        types: Types::Only(&[api(S3, 3)]),
        help: "key prefix the volume is confined to, e.g. `agents/run1`; a leading `/` and a trailing `/` are ignored (`/agents/run1/` = `agents/run1`); empty or `/` = whole bucket",
        default: "whole bucket",
        bad: &[bad(
            "an empty (`a//b`), `.` or `..` component, a control character, over 1024 bytes",
            "a/../b",
        )],
        ..ROW
    },
    VolumeOption {
        name: "pathStyle",
        types: Types::Only(&[api(S3, 4)]),
        value: ValueType::Bool,
        help: "`true`: path-style requests (`host/bucket/key`); `false`: virtual-hosted (`bucket.host/key`)",
        default: "path style for IP-address and `localhost` endpoints, virtual-hosted otherwise",
        bad: &[bad("", "sometimes")],
        ..ROW
    },
    VolumeOption {
        name: "path",
        types: Types::Only(&[api(Ossfs, 2)]),
        help: "key prefix inside the bucket, same rules as `prefix` of `type=s3` (`/sandbox/user-a` = `sandbox/user-a`)",
        default: "whole bucket",
        bad: &[bad("", "a/../b")],
        ..ROW
    },
    VolumeOption {
        name: "version",
        types: Types::Only(&[api(Ossfs, 3)]),
        help: "`1.0` or `2.0`: the ossfs version whose mount options `options` takes (see [below](#ossfs-options)); shown by `docker volume inspect`; both are served by objectfs alike",
        default: "`2.0`",
        expected: "1.0 or 2.0",
        bad: &[bad("", "3.0")],
        ..ROW
    },
    VolumeOption {
        name: "options",
        types: Types::Only(&[api(Ossfs, 4)]),
        value: ValueType::List,
        help: "ossfs mount options, comma-separated, optionally after `-o `: see [below](#ossfs-options)",
        default: "none",
        more: "see [below](#ossfs-options)",
        ..ROW
    },
    VolumeOption {
        name: "accessKeyId",
        types: Types::Only(&[api(S3, 6), api(Ossfs, 5)]),
        help: "the access key id of inline keys",
        default: "anonymous requests",
        more: SEE_CREDENTIALS,
        ..ROW
    },
    VolumeOption {
        name: "accessKeySecret",
        types: Types::Only(&[api(S3, 7), api(Ossfs, 6)]),
        help: "the secret of inline keys (with `accessKeyId`)",
        default: "anonymous requests",
        more: SEE_CREDENTIALS,
        ..ROW
    },
    VolumeOption {
        name: "sessionToken",
        types: Types::Only(&[api(S3, 8), api(Ossfs, 7)]),
        help: "the session token of temporary inline keys (with both keys)",
        default: "none",
        more: SEE_CREDENTIALS,
        ..ROW
    },
    VolumeOption {
        name: "credentials",
        types: Types::Only(&[api(S3, 5), api(Ossfs, 8)]),
        help: "the name of a [credential profile](#credential-profiles) on the plugin's side, instead of inline keys",
        default: "anonymous requests",
        more: SEE_CREDENTIALS,
        ..ROW
    },
    VolumeOption {
        name: "credentialSource",
        types: Types::Only(&[plugin(S3, 16), plugin(Ossfs, 17)]),
        help: "`ecsRamRole`: the temporary keys of an Alibaba Cloud ECS instance's RAM role, from the instance metadata service (hardened mode), refreshed by the mount before they expire; `aws`: the AWS SDK's default chain in the mount (environment, web identity token file, container and instance metadata). Instead of keys or a profile",
        default: "keys, a profile, or anonymous requests",
        expected: "ecsRamRole or aws, e.g. credentialSource=ecsRamRole",
        bad: &[bad("", "vault")],
        more: SEE_CREDENTIALS,
        ..ROW
    },
    VolumeOption {
        name: "ramRole",
        types: Types::Only(&[plugin(S3, 17), plugin(Ossfs, 18)]),
        help: "with `credentialSource=ecsRamRole`: the RAM role's name",
        default: "the role attached to the instance (asked of the metadata service)",
        expected: "a RAM role name of 1–64 letters, digits, `.`, `-` or `_`, e.g. ramRole=sandbox-writer",
        bad: &[bad("", "a/b")],
        more: SEE_CREDENTIALS,
        ..ROW
    },
    VolumeOption {
        name: "metadataEndpoint",
        types: Types::Only(&[plugin(S3, 18), plugin(Ossfs, 19)]),
        help: "with `credentialSource`: where the instance metadata service answers, `http://HOST[:PORT]` (for a proxy, or a test's fake service)",
        default: "`http://100.100.100.200` (ECS), the SDK's own (AWS)",
        expected: "http://HOST[:PORT], e.g. metadataEndpoint=http://127.0.0.1:8080",
        bad: &[bad("", "https://x/y")],
        more: SEE_CREDENTIALS,
        ..ROW
    },
    VolumeOption {
        name: "upload",
        types: Types::Only(&[api(S3, 9), plugin(Ossfs, 10)]),
        help: "`async`: close returns at once, the upload runs in the background, and so do mkdir, unlink, rename and the like (journalled, replayed after a crash); `sync`: close and each of those wait until the bucket has the change (unmount always waits for everything)",
        default: "`async`",
        expected: "async or sync",
        bad: &[bad("", "later")],
        ..ROW
    },
    VolumeOption {
        name: "metadataTtl",
        types: Types::Only(&[api(S3, 10), plugin(Ossfs, 11)]),
        value: ValueType::Seconds,
        help: "seconds attributes, negative lookups and directory listings are cached, 0–3600, fractions allowed (`0.25`); no sign, exponent or unit",
        default: "1",
        expected: "a number of seconds from 0 to 3600 (fractions allowed), e.g. metadataTtl=1.5",
        bad: &[bad("", "-1")],
        ..ROW
    },
    VolumeOption {
        name: "attrsFromListing",
        types: Types::Only(&[api(S3, 11), plugin(Ossfs, 12)]),
        value: ValueType::Bool,
        help: "`true`: files seen through a listing take size and mtime from it and the default owner and mode, with no HEAD per file (`ls -l` of 2,000 entries 8× faster than s3fs instead of 0.9×, docs/PERFORMANCE.md); modes, owners and mtimes set by chmod, chown or touch then show as the defaults until this mount changes the file (docs/SEMANTICS.md). `false` (or `1`/`0`, `yes`/`no`, `on`/`off`)",
        default: "`false`: exact attributes from each object's metadata",
        bad: &[bad("", "maybe")],
        ..ROW
    },
    VolumeOption {
        name: "uid",
        types: Types::Only(&[api(S3, 12), plugin(Ossfs, 13)]),
        value: ValueType::Id,
        help: "owner shown for objects that carry no uid metadata (objects written by other tools); 0–4294967294",
        default: "the mount process's (root)",
        expected: "a numeric user id, e.g. uid=1000",
        bad: &[bad("", "x")],
        ..ROW
    },
    VolumeOption {
        name: "gid",
        types: Types::Only(&[api(S3, 13), plugin(Ossfs, 14)]),
        value: ValueType::Id,
        help: "group shown for objects that carry no gid metadata (objects written by other tools); 0–4294967294",
        default: "the mount process's (root)",
        expected: "a numeric group id, e.g. gid=1000",
        bad: &[bad("", "x")],
        ..ROW
    },
    VolumeOption {
        name: "umask",
        types: Types::Only(&[api(S3, 14), plugin(Ossfs, 15)]),
        value: ValueType::Octal,
        help: "octal, applied to 0666 (files) and 0777 (directories) of objects without mode metadata: `022`, `0022`, `077`",
        default: "`022`",
        expected: "an octal mode from 000 to 777, e.g. umask=022",
        bad: &[bad("", "8")],
        ..ROW
    },
    VolumeOption {
        name: "cacheSize",
        types: Types::Only(&[api(S3, 15), plugin(Ossfs, 16)]),
        value: ValueType::Size,
        help: "bound of the file data the mount keeps in its cache directory: bytes (`1073741824`) or a whole number with `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024) or `KB`, `MB`, `GB`, `TB` (powers of 1000), e.g. `512MiB`, `2GiB`; at least `64MiB`. Clean copies (already in the bucket) are evicted least recently used first; data not yet uploaded is never evicted, and a writer that would take the cache past the bound waits for uploads (up to 30 s), then gets `ENOSPC`",
        default: "`1GiB`, or the plugin's `--default-cache-size` (`OSV_DEFAULT_CACHE_SIZE`)",
        expected: concat!(
            crate::spec::values::cache_size_words!(),
            ", e.g. cacheSize=2GiB"
        ),
        bad: &[bad("", "10MiB")],
        ..ROW
    },
];

/// The options `ty` accepts: the common ones, then its own in their places.
pub fn accepted(ty: VolumeType) -> Vec<&'static VolumeOption> {
    let mut common: Vec<&VolumeOption> = OPTIONS
        .iter()
        .filter(|o| matches!(o.types, Types::Every))
        .collect();
    let mut own: Vec<(u8, &VolumeOption)> = OPTIONS
        .iter()
        .filter(|o| matches!(o.types, Types::Only(_)))
        .filter_map(|o| o.on(ty).map(|on| (on.place, o)))
        .collect();
    own.sort_by_key(|(place, _)| *place);
    common.extend(own.into_iter().map(|(_, o)| o));
    common
}

/// The row of option `name` (documented spelling) for `ty`.
pub fn find(ty: VolumeType, name: &str) -> Option<&'static VolumeOption> {
    OPTIONS
        .iter()
        .find(|o| o.name == name && o.on(ty).is_some())
}

/// Every option name of every type, in its documented spelling, once each.
pub fn option_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for name in VolumeType::ALL
        .into_iter()
        .flat_map(|ty| accepted(ty).into_iter().map(|o| o.name))
    {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each type's places are 0, 1, 2, … with no gap or repeat, and no type
    /// has two rows of one name.
    #[test]
    fn places_are_a_sequence_and_names_unique_per_type() {
        for ty in VolumeType::ALL {
            let mut places: Vec<u8> = OPTIONS
                .iter()
                .filter(|o| matches!(o.types, Types::Only(_)))
                .filter_map(|o| o.on(ty))
                .map(|on| on.place)
                .collect();
            places.sort();
            let want: Vec<u8> = (0..places.len() as u8).collect();
            assert_eq!(places, want, "{ty:?}");
            let names: Vec<&str> = accepted(ty).iter().map(|o| o.name).collect();
            for name in &names {
                assert_eq!(
                    names.iter().filter(|n| *n == name).count(),
                    1,
                    "{ty:?} {name}"
                );
            }
        }
    }

    #[test]
    fn required_options_say_how_to_set_them() {
        for o in OPTIONS {
            let own_sentence =
                matches!(o.name, "type") || (o.name == "path" && o.on(Host).is_some());
            if o.required && !own_sentence {
                assert!(o.example.starts_with(&format!("{}=", o.name)), "{}", o.name);
            }
        }
    }

    /// The cacheSize row's words agree with objectfs's constants.
    #[test]
    fn cache_size_row_matches_objectfs() {
        let row = find(S3, "cacheSize").unwrap();
        assert!(
            row.help.contains(&format!(
                "(up to {} s)",
                objectfs::config::DIRTY_WAIT.as_secs()
            )),
            "{}",
            row.help
        );
        assert_eq!(
            crate::spec::parse_cache_size("1GiB"),
            Some(objectfs::config::DEFAULT_CACHE_SIZE)
        );
        assert!(row.default.starts_with("`1GiB`"), "{}", row.default);
    }

    #[test]
    fn type_names() {
        assert_eq!(ALL_TYPES.join(", "), "host, pvc, ossfs, s3, nfs");
        for ty in VolumeType::ALL {
            assert_eq!(VolumeType::from_name(ty.name()), Some(ty));
        }
    }

    #[test]
    fn option_names_keep_their_order() {
        assert_eq!(
            option_names().join(", "),
            "type, subPath, readOnly, path, claimName, createIfNotExists, \
             deleteOnSandboxTermination, bucket, endpoint, version, options, accessKeyId, \
             accessKeySecret, sessionToken, credentials, region, upload, metadataTtl, \
             attrsFromListing, uid, gid, umask, cacheSize, credentialSource, ramRole, metadataEndpoint, prefix, pathStyle, server"
        );
    }
}
