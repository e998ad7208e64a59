// The agent's TPM 2.0 operations, on the tpm2-tss ESYS library: read the EK certificate from NV,
// the EK's public area, make the attestation key, answer a credential-activation challenge, and
// quote PCRs with a nonce. Byte-oriented, so that the Swift side parses and the C side only talks
// to the TPM. Every object and session is flushed after each call (swtpm has no resource manager).

#ifndef HALLMARK_TPM_H
#define HALLMARK_TPM_H

#include <stddef.h>
#include <stdint.h>

typedef struct hm_tpm hm_tpm;

typedef struct {
    uint32_t rc;
    char message[320];
} hm_tpm_error;

/// Opens the TPM through a TCTI configuration string ("device:/dev/tpmrm0", "swtpm:path=…").
hm_tpm *hm_tpm_open(const char *tcti, hm_tpm_error *error);
void hm_tpm_close(hm_tpm *tpm);

/// Reads an NV index whole (an EK certificate). Returns 0 on success.
int hm_tpm_nv_read(hm_tpm *tpm, uint32_t index, uint8_t *out, size_t capacity, size_t *length, hm_tpm_error *error);

/// The TPMT_PUBLIC bytes of a persistent object (the EK).
int hm_tpm_read_public(hm_tpm *tpm, uint32_t handle, uint8_t *out, size_t capacity, size_t *length, hm_tpm_error *error);

/// The TPMT_PUBLIC bytes of Hallmark's attestation key: an ECC P-256 restricted signing key,
/// ECDSA-SHA256, made as a primary in the endorsement hierarchy (the same key every time).
int hm_tpm_ak_public(hm_tpm *tpm, uint8_t *out, size_t capacity, size_t *length, hm_tpm_error *error);

/// ActivateCredential with the AK and the EK at `ek_handle`: `blob` is the TPM2B_ID_OBJECT's
/// contents and `secret` the TPM2B_ENCRYPTED_SECRET's. Writes the recovered credential.
int hm_tpm_activate(hm_tpm *tpm, uint32_t ek_handle, const uint8_t *blob, size_t blob_length, const uint8_t *secret,
                    size_t secret_length, uint8_t *out, size_t capacity, size_t *length, hm_tpm_error *error);

/// Quotes, for each of `bank_count` banks, the PCRs in `masks[i]` (bit n = PCR n) of bank
/// `hash_algs[i]`, with `nonce` as qualifying data. Writes the TPMS_ATTEST bytes, the marshalled
/// TPMT_SIGNATURE, and the PCR values read right after the quote, concatenated bank by bank in
/// PCR order.
int hm_tpm_quote(hm_tpm *tpm, const uint16_t *hash_algs, const uint32_t *masks, size_t bank_count,
                 const uint8_t *nonce, size_t nonce_length,
                 uint8_t *attest, size_t attest_capacity, size_t *attest_length,
                 uint8_t *signature, size_t signature_capacity, size_t *signature_length,
                 uint8_t *pcrs, size_t pcrs_capacity, size_t *pcrs_length, hm_tpm_error *error);

#endif
