// The one operation Hallmark needs from the system libcrypto: RSA-OAEP encryption with a label,
// for MakeCredential to an RSA endorsement key (swift-crypto has no OAEP label).

#ifndef HALLMARK_CRYPTO_H
#define HALLMARK_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

/// Encrypts `input` to the RSA public key (big-endian `modulus`, `exponent`) with OAEP, using
/// SHA-256 (`hash_bits` 256) or SHA-384 (384) for both OAEP and MGF1, and `label` (its bytes are
/// used as given, a trailing NUL included if present). Returns 0 and sets `*output_length`.
int hm_rsa_oaep_encrypt(const uint8_t *modulus, size_t modulus_length, uint32_t exponent, int hash_bits,
                        const uint8_t *label, size_t label_length, const uint8_t *input, size_t input_length,
                        uint8_t *output, size_t output_capacity, size_t *output_length);

#endif
