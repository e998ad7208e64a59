// XML-DSig verification of a reference integrity manifest with libxmlsec1: the enveloped
// signature, with the signing certificate chained to a pinned root at a given time.

#ifndef HALLMARK_RIM_H
#define HALLMARK_RIM_H

#include <stddef.h>
#include <stdint.h>

/// Returns 0 when the document's signature verifies and its certificate chains to the root in
/// `root_pem` (PEM text) at `verification_time` (Unix seconds); 1 when it does not, and -1 when
/// the document cannot be read. `message` receives the reason.
int hm_rim_verify(const uint8_t *xml, size_t xml_length, const char *root_pem, int64_t verification_time, char *message,
                  size_t message_capacity);

#endif
