#!/usr/bin/env bash
# Installs Triad's systemd units on a host: the user, the directories, the binaries, the units;
# on a database host masks PostgreSQL's own units. Enables the units, starts nothing: the
# operator writes the configuration files first (deploy/systemd/README.md).
#
# Idempotent: run it again after a rebuild to replace the binaries and units; it leaves
# configuration files, certificates and data alone. --dry-run prints every step and changes
# nothing. Run it from a checkout in which the binaries are built (cargo build --release), or
# point --from at them.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

usage() {
    cat <<USAGE
Usage: $(basename "$0") [--controller] [--agent] [OPTIONS]

Installs Triad's systemd units on this host. Say what the host runs (one or both):
  --controller      a controller: triad-controller.service (runs as user triad),
                    data directory /var/lib/triad/controller
  --agent           an agent: triad-agent.service (runs as root with five capabilities),
                    state directory /var/lib/triad/agent; masks PostgreSQL's own units
                    (postgresql.service, postgresql@.service): only the agent may start
                    PostgreSQL (DESIGN.md, safety point 8)

Options:
  --from DIR        where the built binaries are (default: $repo/target/release)
  --mask UNIT       mask this unit too (repeatable, with --agent), e.g. postgresql-15.service
                    where PostgreSQL comes from the PGDG packages
  --root DIR        install into the file system tree at DIR (an image, a chroot) instead of
                    /; systemd is not asked to reload
  --dry-run         print what would be done and change nothing
  -h, --help        this text

It creates the system user and group triad, /etc/triad (root:triad 0750) with tls/, the
data/state directories, copies triad-controller, triad-agent and triadctl to /usr/local/bin
(each only for its role; triadctl always), the units to /etc/systemd/system, the example
configurations to /etc/triad/*.example.toml, and enables the units without starting them.
It never overwrites /etc/triad/controller.toml or /etc/triad/agent.toml, never stops or
starts a service (not even a running PostgreSQL: it says so), and never touches data.

Then: write /etc/triad/controller.toml and/or /etc/triad/agent.toml, put the certificates in
/etc/triad/tls, check them (triad-controller --check --config ..., triad-agent --check ...),
and start: systemctl start triad-controller / triad-agent.
USAGE
}

controller=0
agent=0
dry_run=0
from="$repo/target/release"
root=""
extra_masks=()

while [ $# -gt 0 ]; do
    case "$1" in
        --controller) controller=1 ;;
        --agent) agent=1 ;;
        --dry-run) dry_run=1 ;;
        --from)
            [ $# -ge 2 ] || { echo "install.sh: --from needs a directory" >&2; exit 2; }
            from=$2
            shift
            ;;
        --mask)
            [ $# -ge 2 ] || { echo "install.sh: --mask needs a unit name" >&2; exit 2; }
            extra_masks+=("$2")
            shift
            ;;
        --root)
            [ $# -ge 2 ] || { echo "install.sh: --root needs a directory" >&2; exit 2; }
            root=$(cd "$2" && pwd) || exit 2
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            echo "install.sh: unknown argument: $1 (see --help)" >&2
            exit 2
            ;;
    esac
    shift
done

if [ "$controller" -eq 0 ] && [ "$agent" -eq 0 ]; then
    echo "install.sh: say what this host runs: --controller, --agent, or both (see --help)" >&2
    exit 2
fi
if [ "${#extra_masks[@]}" -gt 0 ] && [ "$agent" -eq 0 ]; then
    echo "install.sh: --mask goes with --agent" >&2
    exit 2
fi
if [ "$dry_run" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: must run as root (or try --dry-run)" >&2
    exit 1
fi

# Paths on the target system, and where they are written (under --root, if given).
R=${root:-}
systemctl_cmd=(systemctl)
user_root=()
if [ -n "$root" ]; then
    systemctl_cmd=(systemctl --root="$root")
    user_root=(--root "$root")
fi

say() { printf '%s\n' "$*"; }
run() {
    printf '+'
    printf ' %q' "$@"
    printf '\n'
    if [ "$dry_run" -eq 0 ]; then
        "$@"
    fi
}

# The binaries this host needs.
binaries=(triadctl)
[ "$controller" -eq 1 ] && binaries+=(triad-controller)
[ "$agent" -eq 1 ] && binaries+=(triad-agent)
for b in "${binaries[@]}"; do
    if [ ! -x "$from/$b" ]; then
        if [ "$dry_run" -eq 1 ]; then
            say "# note: $from/$b is missing (build it: cargo build --release, or give --from)"
        else
            echo "install.sh: $from/$b not found or not executable (cargo build --release, or --from DIR)" >&2
            exit 1
        fi
    fi
done

# --- user and group --------------------------------------------------------------------------
# The controller runs as triad; the group triad may read /etc/triad (configs, certificates).
exists_in() { # FILE NAME: is NAME an entry of the passwd/group file FILE?
    [ -f "$1" ] && cut -d: -f1 "$1" | grep -qx "$2"
}
if exists_in "$R/etc/group" triad; then
    say "# group triad exists"
else
    run groupadd "${user_root[@]}" --system triad
fi
if exists_in "$R/etc/passwd" triad; then
    say "# user triad exists"
else
    run useradd "${user_root[@]}" --system --gid triad --home-dir /var/lib/triad --no-create-home \
        --shell /usr/sbin/nologin --comment "Triad control plane" triad
fi

# Owners by number from the target's own files (under --root the host's names may differ).
id_of() { # FILE NAME -> its numeric id (third field), or NAME itself in a dry run before it exists
    local n=""
    if [ -f "$1" ]; then
        n=$(awk -F: -v n="$2" '$1 == n { print $3 }' "$1")
    fi
    printf '%s' "${n:-$2}"
}
owner() { # USER GROUP -> uid:gid
    printf '%s:%s' "$(id_of "$R/etc/passwd" "$1")" "$(id_of "$R/etc/group" "$2")"
}

# --- directories ---------------------------------------------------------------------------
dir() { # PATH MODE USER GROUP
    run install -d -m "$2" "$R$1"
    run chown "$(owner "$3" "$4")" "$R$1"
    run chmod "$2" "$R$1"
}
dir /etc/triad 0750 root triad
dir /etc/triad/tls 0750 root triad
dir /var/lib/triad 0755 root root
dir /usr/local/share/doc/triad 0755 root root
[ "$controller" -eq 1 ] && dir /var/lib/triad/controller 0700 triad triad
[ "$agent" -eq 1 ] && dir /var/lib/triad/agent 0700 root root

# --- binaries, units, examples, docs -------------------------------------------------------------
run install -d -m 0755 "$R/usr/local/bin" "$R/etc/systemd/system"
for b in "${binaries[@]}"; do
    run install -m 0755 "$from/$b" "$R/usr/local/bin/$b"
done
units=()
[ "$controller" -eq 1 ] && units+=(triad-controller.service)
[ "$agent" -eq 1 ] && units+=(triad-agent.service)
for u in "${units[@]}"; do
    run install -m 0644 "$here/$u" "$R/etc/systemd/system/$u"
done
run install -m 0644 "$here/README.md" "$R/usr/local/share/doc/triad/systemd.md"
examples=(triadctl.example.toml)
[ "$controller" -eq 1 ] && examples+=(controller.example.toml)
[ "$agent" -eq 1 ] && examples+=(agent.example.toml)
for e in "${examples[@]}"; do
    run install -m 0640 "$repo/deploy/$e" "$R/etc/triad/$e"
    run chown "$(owner root triad)" "$R/etc/triad/$e"
done

systemd_running=0
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
    systemd_running=1
fi
if [ "$systemd_running" -eq 1 ]; then
    run systemctl daemon-reload
else
    say "# systemd is not running here${root:+ (installing into $root)}: no daemon-reload"
fi

# --- PostgreSQL's own units ------------------------------------------------------------------
# DESIGN.md, safety point 8: only the agent starts PostgreSQL, always as a standby or fenced
# until the controllers confirm its role. A distribution unit that starts it at boot (or after a
# package upgrade) would bring an old primary back open for writes behind the agent's back.
# Masking (not just disabling) also stops a package's scripts and dependencies from starting it.
if [ "$agent" -eq 1 ]; then
    masks=(postgresql.service postgresql@.service "${extra_masks[@]}")
    run "${systemctl_cmd[@]}" mask "${masks[@]}"
    if [ "$systemd_running" -eq 1 ]; then
        active=$(systemctl list-units --state=active --no-legend --plain 'postgresql*' 2>/dev/null |
            awk '{ print $1 }' || true)
        if [ -n "$active" ]; then
            say "# note: PostgreSQL is running under its distribution unit: $(echo "$active" | tr '\n' ' ')"
            say "#   masking does not stop it, and this script does not. Leave it running for a first"
            say "#   deployment: Triad adopts a running cluster. Once it stops, only the agent starts it."
        fi
    fi
fi

# --- enable, do not start --------------------------------------------------------------------
run "${systemctl_cmd[@]}" enable "${units[@]}"

say ""
say "Installed${root:+ into $root}; nothing was started. Next:"
if [ "$controller" -eq 1 ]; then
    [ -e "$R/etc/triad/controller.toml" ] || say "  - write /etc/triad/controller.toml (from /etc/triad/controller.example.toml)"
    say "  - /etc/triad/tls: ca.pem and this controller's certificate and key (root:triad, key 0640)"
    say "  - triad-controller --check --config /etc/triad/controller.toml && systemctl start triad-controller"
fi
if [ "$agent" -eq 1 ]; then
    [ -e "$R/etc/triad/agent.toml" ] || say "  - write /etc/triad/agent.toml (from /etc/triad/agent.example.toml)"
    say "  - /etc/triad/tls: ca.pem and this agent's certificate and key (root, key 0600)"
    say "  - a watchdog shorter than the lease: echo softdog > /etc/modules-load.d/softdog.conf;"
    say "    echo 'options softdog soft_margin=1' > /etc/modprobe.d/softdog.conf; modprobe softdog soft_margin=1"
    say "  - triad-agent --check --config /etc/triad/agent.toml && systemctl start triad-agent"
fi
