#include "tests/wan/test_certs.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

namespace tideway::testing {

namespace {

EVP_PKEY* new_key() {
  EVP_PKEY* k = EVP_EC_gen("P-256");
  if (k == nullptr) throw std::runtime_error("EVP_EC_gen failed");
  return k;
}

void write_key(EVP_PKEY* k, const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "w");
  PEM_write_PrivateKey(f, k, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
}

void write_cert(X509* c, const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "w");
  PEM_write_X509(f, c);
  std::fclose(f);
}

EVP_PKEY* read_key(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  EVP_PKEY* k = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  return k;
}

X509* read_cert(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  X509* c = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  return c;
}

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

X509* make_cert(const std::string& cn, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key, long nb_days,
                long days, bool ca) {
  static long serial = 1;
  X509* c = X509_new();
  X509_set_version(c, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(c), serial++);
  X509_gmtime_adj(X509_getm_notBefore(c), nb_days * 86400);
  X509_gmtime_adj(X509_getm_notAfter(c), (nb_days + days) * 86400);
  X509_set_pubkey(c, key);
  X509_NAME* name = X509_get_subject_name(c);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1,
                             -1, 0);
  X509_set_issuer_name(c, issuer != nullptr ? X509_get_subject_name(issuer) : name);
  X509* iss = issuer != nullptr ? issuer : c;
  add_ext(c, iss, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  add_ext(c, iss, NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
  if (!ca) add_ext(c, iss, NID_ext_key_usage, "serverAuth,clientAuth");
  X509_sign(c, issuer_key != nullptr ? issuer_key : key, EVP_sha256());
  return c;
}

}  // namespace

TestPki TestPki::create() {
  char tmpl[] = "/tmp/tideway-pki-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  TestPki p;
  p.dir = tmpl;
  for (int i = 0; i < 2; ++i) {
    const std::string base = p.dir + (i == 0 ? "/ca" : "/other-ca");
    EVP_PKEY* k = new_key();
    X509* c = make_cert(i == 0 ? "Tideway Test CA" : "Untrusted CA", k, nullptr, nullptr, 0, 365, true);
    write_key(k, base + ".key");
    write_cert(c, base + ".pem");
    X509_free(c);
    EVP_PKEY_free(k);
    (i == 0 ? p.ca : p.other_ca) = base + ".pem";
    (i == 0 ? p.ca_key : p.other_ca_key) = base + ".key";
  }
  return p;
}

std::pair<std::string, std::string> TestPki::issue(const std::string& cn, bool by_other_ca, long not_before_days,
                                                   long valid_days) const {
  EVP_PKEY* ca_k = read_key(by_other_ca ? other_ca_key : ca_key);
  X509* ca_c = read_cert(by_other_ca ? other_ca : ca);
  EVP_PKEY* k = new_key();
  X509* c = make_cert(cn, k, ca_c, ca_k, not_before_days, valid_days, false);
  const std::string base = dir + "/" + cn + (by_other_ca ? "-other" : "") + std::to_string(not_before_days);
  write_key(k, base + ".key");
  write_cert(c, base + ".pem");
  X509_free(c);
  X509_free(ca_c);
  EVP_PKEY_free(k);
  EVP_PKEY_free(ca_k);
  return {base + ".pem", base + ".key"};
}

void TestPki::remove() const {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace tideway::testing
