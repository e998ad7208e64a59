// See hallmark_tpm.h. Each function leaves the TPM with no transient object or session loaded.

#include "hallmark_tpm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

struct hm_tpm {
    TSS2_TCTI_CONTEXT *tcti;
    ESYS_CONTEXT *esys;
};

static int fail(hm_tpm_error *error, TSS2_RC rc, const char *what) {
    if (error) {
        error->rc = rc;
        snprintf(error->message, sizeof error->message, "tpm: %s failed: %s (0x%x)", what, rc ? Tss2_RC_Decode(rc) : "", rc);
    }
    return -1;
}

static int fail_message(hm_tpm_error *error, const char *message) {
    if (error) {
        error->rc = 0;
        snprintf(error->message, sizeof error->message, "tpm: %s", message);
    }
    return -1;
}

hm_tpm *hm_tpm_open(const char *tcti, hm_tpm_error *error) {
    hm_tpm *tpm = calloc(1, sizeof *tpm);
    if (!tpm) return NULL;
    TSS2_RC rc = Tss2_TctiLdr_Initialize(tcti, &tpm->tcti);
    if (rc != TSS2_RC_SUCCESS) {
        fail(error, rc, "opening the TCTI");
        free(tpm);
        return NULL;
    }
    rc = Esys_Initialize(&tpm->esys, tpm->tcti, NULL);
    if (rc != TSS2_RC_SUCCESS) {
        fail(error, rc, "Esys_Initialize");
        Tss2_TctiLdr_Finalize(&tpm->tcti);
        free(tpm);
        return NULL;
    }
    return tpm;
}

void hm_tpm_close(hm_tpm *tpm) {
    if (!tpm) return;
    Esys_Finalize(&tpm->esys);
    Tss2_TctiLdr_Finalize(&tpm->tcti);
    free(tpm);
}

static int copy_out(const uint8_t *bytes, size_t count, uint8_t *out, size_t capacity, size_t *length, hm_tpm_error *error) {
    if (count > capacity) return fail_message(error, "output buffer too small");
    memcpy(out, bytes, count);
    *length = count;
    return 0;
}

static int marshal_public(const TPMT_PUBLIC *public, uint8_t *out, size_t capacity, size_t *length, hm_tpm_error *error) {
    size_t offset = 0;
    TSS2_RC rc = Tss2_MU_TPMT_PUBLIC_Marshal(public, out, capacity, &offset);
    if (rc != TSS2_RC_SUCCESS) return fail(error, rc, "marshalling TPMT_PUBLIC");
    *length = offset;
    return 0;
}

int hm_tpm_nv_read(hm_tpm *tpm, uint32_t index, uint8_t *out, size_t capacity, size_t *length, hm_tpm_error *error) {
    ESYS_TR nv = ESYS_TR_NONE;
    TSS2_RC rc = Esys_TR_FromTPMPublic(tpm->esys, index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nv);
    if (rc != TSS2_RC_SUCCESS) return fail(error, rc, "finding the NV index");
    TPM2B_NV_PUBLIC *public = NULL;
    rc = Esys_NV_ReadPublic(tpm->esys, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &public, NULL);
    if (rc != TSS2_RC_SUCCESS) {
        Esys_TR_Close(tpm->esys, &nv);
        return fail(error, rc, "NV_ReadPublic");
    }
    uint16_t size = public->nvPublic.dataSize;
    Esys_Free(public);
    if (size > capacity) {
        Esys_TR_Close(tpm->esys, &nv);
        return fail_message(error, "NV index larger than the buffer");
    }
    size_t done = 0;
    while (done < size) {
        uint16_t chunk = size - done > 512 ? 512 : (uint16_t)(size - done);
        TPM2B_MAX_NV_BUFFER *data = NULL;
        // NV reads of EK certificates are authorised by the owner hierarchy (empty password).
        rc = Esys_NV_Read(tpm->esys, ESYS_TR_RH_OWNER, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, chunk, (uint16_t)done, &data);
        if (rc != TSS2_RC_SUCCESS) {
            Esys_TR_Close(tpm->esys, &nv);
            return fail(error, rc, "NV_Read");
        }
        memcpy(out + done, data->buffer, data->size);
        done += data->size;
        Esys_Free(data);
    }
    Esys_TR_Close(tpm->esys, &nv);
    *length = done;
    return 0;
}

static int read_public(hm_tpm *tpm, uint32_t handle, ESYS_TR *object, TPM2B_PUBLIC **public, hm_tpm_error *error) {
    TSS2_RC rc = Esys_TR_FromTPMPublic(tpm->esys, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, object);
    if (rc != TSS2_RC_SUCCESS) return fail(error, rc, "finding the persistent EK");
    rc = Esys_ReadPublic(tpm->esys, *object, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, public, NULL, NULL);
    if (rc != TSS2_RC_SUCCESS) {
        Esys_TR_Close(tpm->esys, object);
        return fail(error, rc, "ReadPublic");
    }
    return 0;
}

int hm_tpm_read_public(hm_tpm *tpm, uint32_t handle, uint8_t *out, size_t capacity, size_t *length, hm_tpm_error *error) {
    ESYS_TR object = ESYS_TR_NONE;
    TPM2B_PUBLIC *public = NULL;
    if (read_public(tpm, handle, &object, &public, error) != 0) return -1;
    int result = marshal_public(&public->publicArea, out, capacity, length, error);
    Esys_Free(public);
    Esys_TR_Close(tpm->esys, &object);
    return result;
}

static TPM2B_PUBLIC ak_template(void) {
    TPM2B_PUBLIC template = {0};
    template.publicArea.type = TPM2_ALG_ECC;
    template.publicArea.nameAlg = TPM2_ALG_SHA256;
    template.publicArea.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                                           TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;
    template.publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
    template.publicArea.parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
    template.publicArea.parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
    template.publicArea.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
    template.publicArea.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
    return template;
}

static int load_ak(hm_tpm *tpm, ESYS_TR *ak, TPM2B_PUBLIC **public, hm_tpm_error *error) {
    TPM2B_SENSITIVE_CREATE sensitive = {0};
    TPM2B_PUBLIC template = ak_template();
    TPM2B_DATA outside = {0};
    TPML_PCR_SELECTION creation = {0};
    TSS2_RC rc = Esys_CreatePrimary(tpm->esys, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive,
                                    &template, &outside, &creation, ak, public, NULL, NULL, NULL);
    if (rc != TSS2_RC_SUCCESS) return fail(error, rc, "CreatePrimary (attestation key)");
    return 0;
}

int hm_tpm_ak_public(hm_tpm *tpm, uint8_t *out, size_t capacity, size_t *length, hm_tpm_error *error) {
    ESYS_TR ak = ESYS_TR_NONE;
    TPM2B_PUBLIC *public = NULL;
    if (load_ak(tpm, &ak, &public, error) != 0) return -1;
    int result = marshal_public(&public->publicArea, out, capacity, length, error);
    Esys_Free(public);
    Esys_FlushContext(tpm->esys, ak);
    return result;
}

int hm_tpm_activate(hm_tpm *tpm, uint32_t ek_handle, const uint8_t *blob, size_t blob_length, const uint8_t *secret,
                    size_t secret_length, uint8_t *out, size_t capacity, size_t *length, hm_tpm_error *error) {
    TPM2B_ID_OBJECT credential = {0};
    TPM2B_ENCRYPTED_SECRET encrypted = {0};
    if (blob_length > sizeof credential.credential || secret_length > sizeof encrypted.secret) {
        return fail_message(error, "credential challenge larger than the TPM accepts");
    }
    credential.size = (uint16_t)blob_length;
    memcpy(credential.credential, blob, blob_length);
    encrypted.size = (uint16_t)secret_length;
    memcpy(encrypted.secret, secret, secret_length);

    ESYS_TR ek = ESYS_TR_NONE;
    TPM2B_PUBLIC *ek_public = NULL;
    if (read_public(tpm, ek_handle, &ek, &ek_public, error) != 0) return -1;
    // EKs made from the low-range templates authorise use only by PolicySecret(endorsement); the
    // high-range ones carry userWithAuth and take the (empty) password.
    int needs_policy = !(ek_public->publicArea.objectAttributes & TPMA_OBJECT_USERWITHAUTH);
    TPMI_ALG_HASH ek_hash = ek_public->publicArea.nameAlg;
    Esys_Free(ek_public);

    ESYS_TR ak = ESYS_TR_NONE;
    TPM2B_PUBLIC *ak_public = NULL;
    if (load_ak(tpm, &ak, &ak_public, error) != 0) {
        Esys_TR_Close(tpm->esys, &ek);
        return -1;
    }
    Esys_Free(ak_public);

    ESYS_TR session = ESYS_TR_PASSWORD;
    int result = 0;
    TSS2_RC rc;
    if (needs_policy) {
        TPMT_SYM_DEF symmetric = {.algorithm = TPM2_ALG_NULL};
        rc = Esys_StartAuthSession(tpm->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, NULL,
                                   TPM2_SE_POLICY, &symmetric, ek_hash, &session);
        if (rc != TSS2_RC_SUCCESS) {
            result = fail(error, rc, "StartAuthSession");
            session = ESYS_TR_NONE;
            goto done;
        }
        rc = Esys_PolicySecret(tpm->esys, ESYS_TR_RH_ENDORSEMENT, session, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, NULL, NULL,
                               NULL, 0, NULL, NULL);
        if (rc != TSS2_RC_SUCCESS) {
            result = fail(error, rc, "PolicySecret(endorsement)");
            goto done;
        }
    }
    TPM2B_DIGEST *recovered = NULL;
    rc = Esys_ActivateCredential(tpm->esys, ak, ek, ESYS_TR_PASSWORD, session, ESYS_TR_NONE, &credential, &encrypted, &recovered);
    if (rc != TSS2_RC_SUCCESS) {
        result = fail(error, rc, "ActivateCredential");
        goto done;
    }
    result = copy_out(recovered->buffer, recovered->size, out, capacity, length, error);
    Esys_Free(recovered);
done:
    if (session != ESYS_TR_PASSWORD && session != ESYS_TR_NONE) Esys_FlushContext(tpm->esys, session);
    Esys_FlushContext(tpm->esys, ak);
    Esys_TR_Close(tpm->esys, &ek);
    return result;
}

static void select_bank(TPMS_PCR_SELECTION *bank, uint16_t hash_alg, uint32_t mask) {
    memset(bank, 0, sizeof *bank);
    bank->hash = hash_alg;
    bank->sizeofSelect = 3;
    for (int i = 0; i < 24; i++) {
        if (mask & (1u << i)) bank->pcrSelect[i / 8] |= (uint8_t)(1u << (i % 8));
    }
}

int hm_tpm_quote(hm_tpm *tpm, const uint16_t *hash_algs, const uint32_t *masks, size_t bank_count,
                 const uint8_t *nonce, size_t nonce_length,
                 uint8_t *attest, size_t attest_capacity, size_t *attest_length,
                 uint8_t *signature, size_t signature_capacity, size_t *signature_length,
                 uint8_t *pcrs, size_t pcrs_capacity, size_t *pcrs_length, hm_tpm_error *error) {
    TPM2B_DATA qualifying = {0};
    if (bank_count == 0 || bank_count > TPM2_NUM_PCR_BANKS) return fail_message(error, "between one and 16 PCR banks may be quoted");
    if (nonce_length > sizeof qualifying.buffer) return fail_message(error, "nonce too long for the TPM");
    qualifying.size = (uint16_t)nonce_length;
    memcpy(qualifying.buffer, nonce, nonce_length);
    ESYS_TR ak = ESYS_TR_NONE;
    TPM2B_PUBLIC *ak_public = NULL;
    if (load_ak(tpm, &ak, &ak_public, error) != 0) return -1;
    Esys_Free(ak_public);

    TPMT_SIG_SCHEME scheme = {.scheme = TPM2_ALG_NULL};
    TPML_PCR_SELECTION pcr_selection = {0};
    pcr_selection.count = (UINT32)bank_count;
    for (size_t b = 0; b < bank_count; b++) select_bank(&pcr_selection.pcrSelections[b], hash_algs[b], masks[b]);
    TPM2B_ATTEST *quoted = NULL;
    TPMT_SIGNATURE *signed_quote = NULL;
    int result = 0;
    TSS2_RC rc = Esys_Quote(tpm->esys, ak, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &qualifying, &scheme, &pcr_selection, &quoted,
                            &signed_quote);
    Esys_FlushContext(tpm->esys, ak);
    if (rc != TSS2_RC_SUCCESS) return fail(error, rc, "Quote");
    result = copy_out(quoted->attestationData, quoted->size, attest, attest_capacity, attest_length, error);
    if (result == 0) {
        size_t offset = 0;
        rc = Tss2_MU_TPMT_SIGNATURE_Marshal(signed_quote, signature, signature_capacity, &offset);
        if (rc != TSS2_RC_SUCCESS) result = fail(error, rc, "marshalling TPMT_SIGNATURE");
        *signature_length = offset;
    }
    Esys_Free(quoted);
    Esys_Free(signed_quote);
    if (result != 0) return result;

    // The values the quote covered, one PCR at a time so that no read is truncated.
    size_t written = 0;
    for (size_t b = 0; b < bank_count; b++) {
        for (int i = 0; i < 24; i++) {
            if (!(masks[b] & (1u << i))) continue;
            TPML_PCR_SELECTION one = {.count = 1};
            select_bank(&one.pcrSelections[0], hash_algs[b], 1u << i);
            TPML_DIGEST *values = NULL;
            rc = Esys_PCR_Read(tpm->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &one, NULL, NULL, &values);
            if (rc != TSS2_RC_SUCCESS) return fail(error, rc, "PCR_Read");
            if (values->count != 1 || written + values->digests[0].size > pcrs_capacity) {
                Esys_Free(values);
                return fail_message(error, "PCR_Read returned an unexpected selection (is the bank active?)");
            }
            memcpy(pcrs + written, values->digests[0].buffer, values->digests[0].size);
            written += values->digests[0].size;
            Esys_Free(values);
        }
    }
    *pcrs_length = written;
    return 0;
}
