// See hallmark_rim.h.

#include "hallmark_rim.h"

#include <libxml/parser.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <xmlsec/crypto.h>
#include <xmlsec/errors.h>
#include <xmlsec/keysmngr.h>
#include <xmlsec/xmldsig.h>
#include <xmlsec/xmlsec.h>
#include <xmlsec/xmltree.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int initialised = 0;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

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
    xmlNodePtr signature = xmlSecFindNode(xmlDocGetRootElement(doc), xmlSecNodeSignature, xmlSecDSigNs);
    if (!signature) {
        result = say(message, message_capacity, 1, "the RIM has no XML signature");
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
    if (xmlSecDSigCtxVerify(context, signature) < 0) {
        result = say(message, message_capacity, 1,
                     "the XML signature could not be verified: the signing certificate does not chain to the pinned root at "
                     "the verification time, or the signature is malformed");
        goto done;
    }
    if (context->status != xmlSecDSigStatusSucceeded) {
        result = say(message, message_capacity, 1, "the XML signature does not match the document (digest or signature value)");
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
