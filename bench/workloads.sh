# bench/workloads.sh — the agent workloads of issue 14 (sourced, not run, by
# bench/agent.sh, which times them, and bench/requests.sh, which counts what
# they cost the store): the tools they need, their inputs, made on local disk
# before anything is measured, their names, and the order in which a client
# runs them in a directory of its mount.
#
# The sourcing script sources bench/lib.sh first and defines three functions:
#   step W C DIR SCRIPT ARGS...   runs workload W of client C and measures it
#                                 (SCRIPT is bash, run with DIR and ARGS as $1...)
#   prep P C DIR SCRIPT ARGS...   preparation P of a workload (one of PREPS),
#                                 not part of it; false when it fails
#   skip W C REASON               workload W of client C cannot run

SMALL_N=300
BIG_MIB=256
DD_MIB=512
# The SQLite workload: 1,000 INSERTs, one transaction each, into the
# database named by its argument (python3's sqlite3, SQLite's defaults).
SQLITE_PY='
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("create table t (id integer primary key, v text)")
for i in range(1000):
    db.execute("begin")
    db.execute("insert into t (v) values (?)", ("row %d" % i,))
    db.execute("commit")
db.close()
'
# The workloads in the order run_workloads runs them.
WORKLOADS=(tar git regit venv sqlite rename read dd)
# Their preparations, and what each one does.
PREPS=(ren-fixture git-input git-rewrite read-copy read-first)
declare -A PNAME=(
    [ren-fixture]="writing the rename fixture ($SMALL_N files) through a first mount"
    [git-input]="unpacking git's $SMALL_N input files"
    [git-rewrite]="unpacking the $SMALL_N files again over git's work tree, then 2.5 s (past objectfs's 1 s TTL)"
    [read-copy]="\`cp\` of the $BIG_MIB MiB file into the mount"
    [read-first]="first read of the $BIG_MIB MiB file (page cache dropped)"
)
declare -A WNAME=(
    [tar]="\`tar x\` of $SMALL_N files of 1-8 KiB"
    [git]="\`git init && git add -A && git commit\` + \`git status\` ($SMALL_N files)"
    [regit]="\`git add -A && git commit\` after rewriting the $SMALL_N tracked files"
    [venv]="\`python3 -m venv v\` (with pip)"
    [sqlite]="SQLite: 1,000 INSERTs, one transaction each"
    [rename]="\`mv\` of a directory of $SMALL_N uploaded files"
    [read]="second read of a $BIG_MIB MiB file (dd bs=8M)"
    [dd]="\`dd bs=8M count=64 conv=fsync\` (512 MiB)"
)

# workload_tools: installs what the workloads run (git, python3 with venv and
# sqlite3) and sets PY; git runs without the user's configuration (an
# identity, and no ownership check on FUSE). Call after make_workdir.
workload_tools() {
    install_missing git:git python3:python3
    PY=$(python3 -c 'import sys; print(sys.executable)')
    if ! "$PY" -c 'import ensurepip, venv, sqlite3' 2>/dev/null; then
        log "installing python3-venv with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        "$PY" -c 'import ensurepip, venv, sqlite3' || die "$PY has no ensurepip/venv/sqlite3"
    fi
    export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=$WORK/gitconfig
    printf '[user]\n\tname = bench\n\temail = bench@localhost\n[safe]\n\tdirectory = *\n[init]\n\tdefaultBranch = main\n' >"$GIT_CONFIG_GLOBAL"
}

# make_inputs: IN=$WORK/in with files/ (SMALL_N files of 1-8 KiB in 6
# directories, also the rename fixture), small.tar (the same), big (BIG_MIB
# MiB of random data) and files.tsv ("path<TAB>size" of files/).
make_inputs() {
    local i d n data
    IN=$WORK/in
    log "making the inputs in $IN"
    mkdir -p "$IN/files"
    for ((i = 0; i < SMALL_N; i++)); do
        d=$IN/files/d$((i % 6))
        mkdir -p "$d"
        n=$((1024 + RANDOM % 7169))
        data=$(head -c "$n" /dev/urandom | base64 -w 76) # no pipe cut short: set -o pipefail
        printf '%s' "${data:0:n}" >"$d/f$i.txt"
    done
    tar -cf "$IN/small.tar" -C "$IN/files" .
    head -c $((BIG_MIB * 1024 * 1024)) /dev/urandom >"$IN/big"
    (cd "$IN/files" && find . -type f -printf '%P\t%s\n' | sort) >"$IN/files.tsv"
}

# write_fixture C DIR: writes the rename fixture ren/ into DIR, the first
# mount of client C (run_workloads renames it in a later one).
write_fixture() { prep ren-fixture "$1" "$2" 'cp -r "$2" "$1/ren"' "$IN/files"; }

# run_workloads C DIR: every workload of client C in DIR (the rename source
# DIR/ren exists: the fixture, uploaded before DIR was mounted).
run_workloads() {
    local c=$1 d=$2
    step tar "$c" "$d" 'mkdir "$1/tar" && tar -xf "$2" -C "$1/tar"' "$IN/small.tar"
    if prep git-input "$c" "$d" 'mkdir "$1/git" && tar -xf "$2" -C "$1/git"' "$IN/small.tar"; then
        step git "$c" "$d" 'cd "$1/git" && git init -q && git add -A && git commit -q -m x && git status --porcelain >/dev/null'
        # An agent regenerating files it committed: git hashes them again and
        # freshens each loose object (one per .git/objects/xx/) it finds.
        if prep git-rewrite "$c" "$d" 'tar -xf "$2" -C "$1/git" && sleep 2.5' "$IN/small.tar"; then
            step regit "$c" "$d" 'cd "$1/git" && git add -A && git commit -q --allow-empty -m y'
        else skip regit "$c" "could not unpack the input again"; fi
    else
        skip git "$c" "could not unpack the input"
        skip regit "$c" "could not unpack the input"
    fi
    step venv "$c" "$d" 'mkdir "$1/venv" && cd "$1/venv" && "$2" -m venv v' "$PY"
    step sqlite "$c" "$d" 'mkdir "$1/sqlite" && "$2" -c "$3" "$1/sqlite/db"' "$PY" "$SQLITE_PY"
    if [[ -d $d/ren ]]; then
        step rename "$c" "$d" 'mv "$1/ren" "$1/ren-moved"'
    else skip rename "$c" "the uploaded directory is missing"; fi
    if prep read-copy "$c" "$d" 'mkdir "$1/read" && cp "$2" "$1/read/big"' "$IN/big"; then
        drop_caches
        if prep read-first "$c" "$d" 'dd if="$1/read/big" of=/dev/null bs=8M status=none'; then
            step read "$c" "$d" 'dd if="$1/read/big" of=/dev/null bs=8M status=none'
        else skip read "$c" "the first read failed"; fi
    else skip read "$c" "could not write the file"; fi
    step dd "$c" "$d" 'mkdir "$1/dd" && dd if=/dev/zero of="$1/dd/F" bs=8M count=64 conv=fsync status=none'
}
