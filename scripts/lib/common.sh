# Shared by the scripts: the project root, and installing what is missing from Debian's packages.

HALLMARK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# ensure_packages PKG...: installs the Debian packages that are not installed yet.
ensure_packages() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The system packages the build uses: SQLite, libcrypto (RSA-OAEP for TPM credentials) and the
# tpm2-tss libraries the agent's TPM attestor links, and libxmlsec1 for NVIDIA RIM signatures.
HALLMARK_PACKAGES=(openssl libsqlite3-dev sqlite3 libssl-dev libtss2-dev libxmlsec1-dev)
# And what the tests add: a software TPM and tpm2-tools, the tests' own hand on it, and cfssl,
# the peer the benchmark (and its smoke run) signs against; jq, to read audit exports as an outside party would.
HALLMARK_TEST_PACKAGES=(swtpm swtpm-tools tpm2-tools xmlsec1 golang-cfssl jq)
