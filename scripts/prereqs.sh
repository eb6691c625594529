# Sourced by scripts/test.sh and scripts/demo.sh: installs what cargo cannot, when it is missing.
#   - libclang (Debian libclang-dev): bindgen needs it to build the rocksdb crate's bindings.
# It also points cargo at one shared target directory outside the clone, so that a fresh clone
# (CI's, or yours) reuses the slow RocksDB build.

die() { echo "error: $*" >&2; exit 1; }

command -v cargo >/dev/null 2>&1 || die "cargo is not installed; install Rust with rustup (https://rustup.rs) and re-run"

# Only libclang itself (libclang.so, libclang-14.so.1): libclang-cpp, which other packages pull
# in, is a different library and bindgen cannot use it.
have_libclang() {
    local dir
    for dir in /usr/lib/llvm-*/lib /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu; do
        compgen -G "$dir/libclang.so*" >/dev/null 2>&1 && return 0
        compgen -G "$dir/libclang-[0-9]*.so*" >/dev/null 2>&1 && return 0
    done
    return 1
}

if ! have_libclang; then
    echo "libclang is missing (RocksDB's bindings need it): installing libclang-dev ..." >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    command -v apt-get >/dev/null 2>&1 || die "no apt-get here: install libclang (clang's shared library) by hand"
    $SUDO apt-get install -y libclang-dev >/dev/null 2>&1 \
        || { $SUDO apt-get update >/dev/null 2>&1 && $SUDO apt-get install -y libclang-dev >/dev/null; } \
        || die "could not install libclang-dev"
    have_libclang || die "libclang-dev installed but libclang.so not found"
fi

#   - PostgreSQL server binaries: the demo's database members and the end-to-end tests run real
#     PostgreSQL (Debian's `postgresql` package puts them in /usr/lib/postgresql/*/bin).
have_postgres() {
    compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1
}

if ! have_postgres; then
    echo "PostgreSQL server binaries are missing: installing postgresql ..." >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    command -v apt-get >/dev/null 2>&1 || die "no apt-get here: install the PostgreSQL server (15 or later) by hand"
    $SUDO apt-get install -y postgresql >/dev/null 2>&1 \
        || { $SUDO apt-get update >/dev/null 2>&1 && $SUDO apt-get install -y postgresql >/dev/null; } \
        || die "could not install postgresql"
    have_postgres || die "postgresql installed but pg_ctl not found"
fi

#   - The real senders the alert tests use: Prometheus Alertmanager (Debian's
#     prometheus-alertmanager), rsyslog, logger (bsdutils) and curl; and promtool (Debian's
#     prometheus), which checks the controllers' metrics and runs the dashboards' queries; snmpd
#     and snmpget (Debian's snmpd and snmp), the SNMP agent the link tests and the demo poll.
install_pkg() {
    local cmd=$1 pkg=$2
    command -v "$cmd" >/dev/null 2>&1 && return 0
    [ -x "/usr/sbin/$cmd" ] && return 0
    echo "$cmd is missing (the tests need it): installing $pkg ..." >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    command -v apt-get >/dev/null 2>&1 || die "no apt-get here: install $pkg by hand"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$pkg" >/dev/null 2>&1 \
        || { $SUDO apt-get update >/dev/null 2>&1 && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$pkg" >/dev/null; } \
        || die "could not install $pkg"
}
# jemalloc (the controller's allocator) is built from C with configure and make.
install_pkg make make
install_pkg prometheus-alertmanager prometheus-alertmanager
install_pkg rsyslogd rsyslog
install_pkg logger bsdutils
install_pkg curl curl
install_pkg promtool prometheus
install_pkg wrk wrk
# Link tests poll a real SNMP agent (started by the test on a loopback port, its own config).
install_pkg snmpd snmpd
install_pkg snmpget snmp
# The dashboard test plots what Prometheus returns for each panel (the runbook's screenshots).
install_pkg gnuplot gnuplot-nox
# The shipped HAProxy configuration runs in front of a real cluster in the tests.
install_pkg haproxy haproxy
# The deployment assets' checks: systemd-analyze verify for the units, and kubernetes-validate
# (PyPI; it bundles the Kubernetes schemas, so it needs no network when it runs) for the manifests.
install_pkg systemd-analyze systemd
if ! command -v kubernetes-validate >/dev/null 2>&1; then
    echo "kubernetes-validate is missing (the tests need it): installing it from PyPI ..." >&2
    command -v pip3 >/dev/null 2>&1 || install_pkg pip3 python3-pip
    pip3 install --quiet kubernetes-validate==1.37.0 >/dev/null 2>&1 \
        || pip3 install --quiet --break-system-packages kubernetes-validate==1.37.0 >/dev/null \
        || die "could not install kubernetes-validate (pip3 install kubernetes-validate==1.37.0)"
    hash -r
    command -v kubernetes-validate >/dev/null 2>&1 || die "kubernetes-validate installed but not on PATH"
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/triad-target}"
mkdir -p "$CARGO_TARGET_DIR"
