// libxmlsec1 with its OpenSSL backend (Debian libxmlsec1-dev), for XML-DSig on NVIDIA RIMs. The
// headers proper are included by CHallmarkRIM, with the defines xmlsec1-openssl.pc requires;
// this module brings the include paths and the libraries.
#include <xmlsec/version.h>
