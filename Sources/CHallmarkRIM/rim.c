// See hallmark_rim.h.
//
// A RIM is trusted only as NVIDIA signs one: one enveloped signature over the whole document, made
// with ecdsa-sha384 over C14N 1.1 and sha384 digests, by a key that libxmlsec1 took from an X.509
// certificate it verified to the pinned root at the verification time. Every other key source in
// <KeyInfo> (KeyValue, KeyName, RetrievalMethod, …) is disabled, so a document cannot bring the
// key that verifies it. The shape is checked in the tree first, so that each refusal names the
// rule; libxmlsec1 is then limited to the same algorithms, so the two checks cannot disagree.

#include "hallmark_rim.h"

#include <libxml/parser.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <xmlsec/crypto.h>
#include <xmlsec/errors.h>
#include <xmlsec/keysmngr.h>
#include <xmlsec/openssl/x509.h>
#include <xmlsec/xmldsig.h>
#include <xmlsec/xmlsec.h>
#include <xmlsec/xmltree.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int initialised = 0;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const c14n11 = "http://www.w3.org/2006/12/xml-c14n11";
static const char *const ecdsa_sha384 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384";
static const char *const sha384 = "http://www.w3.org/2001/04/xmldsig-more#sha384";
static const char *const enveloped = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

static void initialise(void) {
    xmlInitParser();
    if (xmlSecInit() < 0) return;
    if (xmlSecCryptoAppInit(NULL) < 0) return;
    if (xmlSecCryptoInit() < 0) return;
    // Errors are reported through the return values and messages here, not printed.
    xmlSecErrorsSetCallback(NULL);
    initialised = 1;
}

static int say(char *message, size_t capacity, int result, const char *text) {
    if (message && capacity) snprintf(message, capacity, "%s", text);
    return result;
}

/// The first element at or after `node` among its siblings (text and comments skipped).
static xmlNodePtr next_element(xmlNodePtr node) {
    for (; node; node = node->next) {
        if (node->type == XML_ELEMENT_NODE) return node;
    }
    return NULL;
}

static int is_dsig(xmlNodePtr node, const xmlChar *name) {
    return node && node->type == XML_ELEMENT_NODE && xmlSecCheckNodeName(node, name, xmlSecDSigNs);
}

static int has_algorithm(xmlNodePtr node, const char *algorithm) {
    xmlChar *value = xmlGetProp(node, xmlSecAttrAlgorithm);
    int same = value && strcmp((const char *)value, algorithm) == 0;
    if (value) xmlFree(value);
    return same;
}

/// Counts the Signature elements anywhere in the subtree of `node`.
static int count_signatures(xmlNodePtr node) {
    int count = 0;
    for (; node; node = node->next) {
        if (node->type != XML_ELEMENT_NODE) continue;
        if (xmlSecCheckNodeName(node, xmlSecNodeSignature, xmlSecDSigNs)) count++;
        count += count_signatures(node->children);
    }
    return count;
}

/// Checks the signature's shape against the one NVIDIA signs with. Returns NULL when it matches,
/// otherwise the rule that failed.
static const char *check_shape(xmlNodePtr root, xmlNodePtr signature) {
    if (count_signatures(root) != 1) return "rim: the document must carry exactly one Signature element";
    if (signature->parent != root) return "rim: the Signature must be a child of the document's root element (an enveloped signature)";
    xmlNodePtr signed_info = next_element(signature->children);
    if (!is_dsig(signed_info, xmlSecNodeSignedInfo)) return "rim: the Signature must begin with SignedInfo";
    xmlNodePtr value = next_element(signed_info->next);
    xmlNodePtr key_info = value ? next_element(value->next) : NULL;
    if (!is_dsig(key_info, xmlSecNodeKeyInfo)) return "rim: the Signature must carry KeyInfo with the signing certificate chain";
    xmlNodePtr data = next_element(key_info->children);
    if (!data) return "rim: KeyInfo must carry X509Data (the signing certificate chain)";
    for (; data; data = next_element(data->next)) {
        if (!is_dsig(data, xmlSecNodeX509Data))
            return "rim: KeyInfo may carry only X509Data: a key the document brings itself (KeyValue, KeyName, RetrievalMethod) is never trusted";
    }
    xmlNodePtr node = next_element(signed_info->children);
    if (!is_dsig(node, xmlSecNodeCanonicalizationMethod) || !has_algorithm(node, c14n11))
        return "rim: SignedInfo's CanonicalizationMethod must be C14N 1.1";
    node = next_element(node->next);
    if (!is_dsig(node, xmlSecNodeSignatureMethod) || !has_algorithm(node, ecdsa_sha384))
        return "rim: SignedInfo's SignatureMethod must be ecdsa-sha384";
    xmlNodePtr reference = next_element(node->next);
    if (!is_dsig(reference, xmlSecNodeReference)) return "rim: SignedInfo must hold a Reference";
    if (next_element(reference->next)) return "rim: SignedInfo must hold exactly one Reference";
    xmlChar *uri = xmlGetProp(reference, xmlSecAttrURI);
    int whole = uri && uri[0] == 0;
    if (uri) xmlFree(uri);
    if (!whole) return "rim: the Reference must have URI=\"\" (the whole document)";
    node = next_element(reference->children);
    if (!is_dsig(node, xmlSecNodeTransforms)) return "rim: the Reference must carry Transforms with the enveloped-signature transform";
    xmlNodePtr transform = next_element(node->children);
    if (!is_dsig(transform, xmlSecNodeTransform) || !has_algorithm(transform, enveloped))
        return "rim: the Reference's first transform must be the enveloped-signature transform";
    transform = next_element(transform->next);
    if (transform) {
        if (!is_dsig(transform, xmlSecNodeTransform) || !has_algorithm(transform, c14n11))
            return "rim: the Reference may add only C14N 1.1 after the enveloped-signature transform";
        if (next_element(transform->next)) return "rim: the Reference may carry at most two transforms (enveloped-signature, C14N 1.1)";
    }
    node = next_element(node->next);
    if (!is_dsig(node, xmlSecNodeDigestMethod) || !has_algorithm(node, sha384)) return "rim: the Reference's DigestMethod must be sha384";
    return NULL;
}

int hm_rim_verify(const uint8_t *xml, size_t xml_length, const char *root_pem, int64_t verification_time, char *message,
                  size_t message_capacity) {
    pthread_once(&once, initialise);
    if (!initialised) return say(message, message_capacity, -1, "libxmlsec1 could not be initialised");
    pthread_mutex_lock(&lock);
    int result = -1;
    xmlDocPtr doc = xmlReadMemory((const char *)xml, (int)xml_length, "rim.xml", NULL, XML_PARSE_NONET);
    xmlSecKeysMngrPtr manager = NULL;
    xmlSecDSigCtxPtr context = NULL;
    if (!doc || !xmlDocGetRootElement(doc)) {
        result = say(message, message_capacity, -1, "the RIM is not well-formed XML");
        goto done;
    }
    xmlNodePtr root = xmlDocGetRootElement(doc);
    xmlNodePtr signature = xmlSecFindNode(root, xmlSecNodeSignature, xmlSecDSigNs);
    if (!signature) {
        result = say(message, message_capacity, 1, "the RIM has no XML signature");
        goto done;
    }
    const char *shape = check_shape(root, signature);
    if (shape) {
        result = say(message, message_capacity, 1, shape);
        goto done;
    }
    manager = xmlSecKeysMngrCreate();
    if (!manager || xmlSecCryptoAppDefaultKeysMngrInit(manager) < 0) {
        result = say(message, message_capacity, -1, "could not create a key manager");
        goto done;
    }
    if (xmlSecCryptoAppKeysMngrCertLoadMemory(manager, (const xmlSecByte *)root_pem, (xmlSecSize)strlen(root_pem), xmlSecKeyDataFormatPem,
                                              xmlSecKeyDataTypeTrusted) < 0) {
        result = say(message, message_capacity, -1, "the pinned RIM root is not a PEM certificate");
        goto done;
    }
    context = xmlSecDSigCtxCreate(manager);
    if (!context) {
        result = say(message, message_capacity, -1, "could not create a signature context");
        goto done;
    }
    context->keyInfoReadCtx.certsVerificationTime = (time_t)verification_time;
    context->keyInfoReadCtx.flags |= XMLSEC_KEYINFO_FLAGS_X509DATA_STOP_ON_INVALID_CERT;
    if (xmlSecPtrListAdd(&context->keyInfoReadCtx.enabledKeyData, (xmlSecPtr)xmlSecOpenSSLKeyDataX509Id) < 0 ||
        xmlSecDSigCtxEnableSignatureTransform(context, xmlSecTransformInclC14N11Id) < 0 ||
        xmlSecDSigCtxEnableSignatureTransform(context, xmlSecOpenSSLTransformEcdsaSha384Id) < 0 ||
        xmlSecDSigCtxEnableReferenceTransform(context, xmlSecTransformEnvelopedId) < 0 ||
        xmlSecDSigCtxEnableReferenceTransform(context, xmlSecTransformInclC14N11Id) < 0 ||
        xmlSecDSigCtxEnableReferenceTransform(context, xmlSecOpenSSLTransformSha384Id) < 0) {
        result = say(message, message_capacity, -1, "could not restrict the signature context");
        goto done;
    }
    if (xmlSecDSigCtxVerify(context, signature) < 0) {
        result = say(message, message_capacity, 1,
                     "rim: the XML signature could not be verified: no key from an X.509 certificate that chains to the pinned "
                     "root at the verification time, or the signature is malformed");
        goto done;
    }
    if (context->status != xmlSecDSigStatusSucceeded) {
        result = say(message, message_capacity, 1, "rim: the XML signature does not match the document (digest or signature value)");
        goto done;
    }
    // Belt and braces: the key that verified must be one libxmlsec1 took from a verified certificate.
    xmlSecKeyDataPtr x509 = context->signKey ? xmlSecKeyGetData(context->signKey, xmlSecOpenSSLKeyDataX509Id) : NULL;
    if (!x509 || !xmlSecOpenSSLKeyDataX509GetKeyCert(x509)) {
        result = say(message, message_capacity, 1, "rim: the signing key did not come from an X.509 certificate verified to the pinned root");
        goto done;
    }
    if (xmlSecPtrListGetSize(&context->signedInfoReferences) != 1) {
        result = say(message, message_capacity, 1, "rim: SignedInfo must hold exactly one Reference");
        goto done;
    }
    result = say(message, message_capacity, 0, "ok");
done:
    if (context) xmlSecDSigCtxDestroy(context);
    if (manager) xmlSecKeysMngrDestroy(manager);
    if (doc) xmlFreeDoc(doc);
    pthread_mutex_unlock(&lock);
    return result;
}
