// See hallmark_crypto.h.

#include "hallmark_crypto.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <string.h>

int hm_rsa_oaep_encrypt(const uint8_t *modulus, size_t modulus_length, uint32_t exponent, int hash_bits,
                        const uint8_t *label, size_t label_length, const uint8_t *input, size_t input_length,
                        uint8_t *output, size_t output_capacity, size_t *output_length) {
    int result = -1;
    BIGNUM *n = BN_bin2bn(modulus, (int)modulus_length, NULL);
    BIGNUM *e = BN_new();
    OSSL_PARAM_BLD *builder = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *from = NULL, *ctx = NULL;
    EVP_PKEY *key = NULL;
    const EVP_MD *md = hash_bits == 384 ? EVP_sha384() : hash_bits == 256 ? EVP_sha256() : NULL;
    if (!n || !e || !builder || !md || !BN_set_word(e, exponent ? exponent : 65537)) goto done;
    if (!OSSL_PARAM_BLD_push_BN(builder, OSSL_PKEY_PARAM_RSA_N, n) || !OSSL_PARAM_BLD_push_BN(builder, OSSL_PKEY_PARAM_RSA_E, e)) goto done;
    params = OSSL_PARAM_BLD_to_param(builder);
    from = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (!params || !from || EVP_PKEY_fromdata_init(from) <= 0 || EVP_PKEY_fromdata(from, &key, EVP_PKEY_PUBLIC_KEY, params) <= 0) goto done;
    ctx = EVP_PKEY_CTX_new(key, NULL);
    if (!ctx || EVP_PKEY_encrypt_init(ctx) <= 0) goto done;
    if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) <= 0) goto done;
    if (EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md) <= 0 || EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) <= 0) goto done;
    if (label_length > 0) {
        // OpenSSL takes ownership of the label.
        unsigned char *copy = OPENSSL_malloc(label_length);
        if (!copy) goto done;
        memcpy(copy, label, label_length);
        if (EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, copy, (int)label_length) <= 0) {
            OPENSSL_free(copy);
            goto done;
        }
    }
    size_t length = output_capacity;
    if (EVP_PKEY_encrypt(ctx, output, &length, input, input_length) <= 0) goto done;
    *output_length = length;
    result = 0;
done:
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_CTX_free(from);
    EVP_PKEY_free(key);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(builder);
    BN_free(n);
    BN_free(e);
    return result;
}
