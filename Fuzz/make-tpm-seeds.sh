#!/usr/bin/env bash
# Writes the TPM seeds of Fuzz/Corpus/FuzzTPMStructures from a software TPM: an ECC and an RSA
# attestation key's TPMT_PUBLIC, and a quote's TPMS_ATTEST and TPMT_SIGNATURE for each. Each
# seed starts with the FuzzTPMStructures selector byte (0 public, 1 attest, 2 signature).
set -euo pipefail
out="$(cd "$(dirname "$0")" && pwd)/Corpus/FuzzTPMStructures"
mkdir -p "$out"
work=$(mktemp -d)
trap 'kill "$swtpm_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000))
swtpm socket --tpm2 --tpmstate dir="$work" --server type=tcp,port=$port --ctrl type=tcp,port=$((port + 1)) \
    --flags not-need-init,startup-clear &
swtpm_pid=$!
sleep 0.5
export TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$port"
cd "$work"
for kind in ecc256:ecdsa-sha256:null rsa2048:rsassa-sha256:null; do
    name=${kind%%:*}
    tpm2_createprimary -Q -C e -G "$kind" -a "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign" -c ak.ctx
    tpm2_readpublic -Q -c ak.ctx -o ak.pub -f tss
    { printf '\x00'; tail -c +3 ak.pub; } >"$out/public-$name"  # TPM2B_PUBLIC without its size
    tpm2_quote -Q -c ak.ctx -l sha256:0,1,16 -q 00112233445566778899aabbccddeeff -m quote.msg -s quote.sig -g sha256
    { printf '\x01'; cat quote.msg; } >"$out/attest-$name"
    { printf '\x02'; cat quote.sig; } >"$out/signature-$name"
    tpm2_flushcontext -t
done
echo "TPM seeds written to $out"
