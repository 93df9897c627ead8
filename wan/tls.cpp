#include "wan/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include <stdexcept>

namespace tideway::wan {

namespace ssl = boost::asio::ssl;

namespace {

std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

std::string subject_of(X509* cert) {
  if (cert == nullptr) return "(no certificate)";
  char buf[512];
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
  return buf;
}

}  // namespace

std::string peer_common_name(SSL* ssl) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) return "";
  char cn[256] = {0};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
  X509_free(cert);
  return cn;
}

std::shared_ptr<ssl::context> make_tls_context(const TlsOptions& opts, bool server) {
  auto ctx = std::make_shared<ssl::context>(server ? ssl::context::tls_server : ssl::context::tls_client);
  SSL_CTX* raw = ctx->native_handle();
  SSL_CTX_set_min_proto_version(raw, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(raw, TLS1_3_VERSION);
  // Renegotiation does not exist in 1.3; tickets are useless to us.
  SSL_CTX_set_options(raw, SSL_OP_NO_TICKET);

  if (opts.ca_file.empty() || opts.cert_file.empty() || opts.key_file.empty())
    throw std::runtime_error("TLS needs ca_file, cert_file and key_file (plaintext is for tests only)");
  if (SSL_CTX_load_verify_locations(raw, opts.ca_file.c_str(), nullptr) != 1)
    throw std::runtime_error("cannot load CA " + opts.ca_file + ": " + openssl_error());
  if (SSL_CTX_use_certificate_chain_file(raw, opts.cert_file.c_str()) != 1)
    throw std::runtime_error("cannot load certificate " + opts.cert_file + ": " + openssl_error());
  if (SSL_CTX_use_PrivateKey_file(raw, opts.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    throw std::runtime_error("cannot load key " + opts.key_file + ": " + openssl_error());
  if (SSL_CTX_check_private_key(raw) != 1)
    throw std::runtime_error("key " + opts.key_file + " does not match certificate " + opts.cert_file);

  ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  const bool is_server = server;
  ctx->set_verify_callback([is_server](bool preverified, ssl::verify_context& vctx) {
    if (!preverified) {
      X509_STORE_CTX* sctx = vctx.native_handle();
      const int err = X509_STORE_CTX_get_error(sctx);
      spdlog::warn("tls: refusing {} certificate {}: {}", is_server ? "client" : "server",
                   subject_of(X509_STORE_CTX_get_current_cert(sctx)),
                   X509_verify_cert_error_string(err));
    }
    return preverified;
  });
  return ctx;
}

}  // namespace tideway::wan
