/* Beyond libnbd, through <libnbd-ext.h>: TLS credentials from memory
 * against nbdkit --tls=require: a pre-shared key, and X.509 (the CA, a
 * client certificate and its encrypted key, with right and wrong
 * passwords), with no file given to the library.
 */
#include "test-util.h"

#include <libnbd-ext.h>

static char dir[] = "/tmp/rnbd-ext-tls.XXXXXX";

static void
cleanup (void)
{
  char cmd[256];
  snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system (cmd) != 0)
    fprintf (stderr, "could not remove %s\n", dir);
}

/* The content of DIR/NAME, NUL-terminated; its length in *LEN. */
static char *
slurp (const char *name, size_t *len)
{
  char path[512];
  FILE *fp;
  char *buf = malloc (65536);
  CHECK (buf != NULL);
  snprintf (path, sizeof path, "%s/%s", dir, name);
  fp = fopen (path, "r");
  if (fp == NULL)
    FAIL ("%s: %s", path, strerror (errno));
  *len = fread (buf, 1, 65535, fp);
  buf[*len] = 0;
  fclose (fp);
  return buf;
}

static void
check_io (struct nbd_handle *h)
{
  char w[512], r[512];
  memset (w, 0x5a, sizeof w);
  CHECK_INT (nbd_get_tls_negotiated (h), 1);
  CHECK_OK (nbd_pwrite (h, w, sizeof w, 4096, 0));
  CHECK_OK (nbd_pread (h, r, sizeof r, 4096, 0));
  CHECK (memcmp (w, r, sizeof r) == 0);
}

int
main (void)
{
  char cmd[4096], psk_arg[600], certs_arg[600];
  static const unsigned char key[16] = {
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
    0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
  };
  struct nbd_handle *h;
  char *ca, *cert, *ekey;
  size_t calen, certlen, ekeylen;
  int i;

  if (system ("certtool --version >/dev/null 2>&1") != 0) {
    fprintf (stderr, "certtool (gnutls-bin) is not installed\n");
    exit (77);
  }
  if (mkdtemp (dir) == NULL)
    FAIL ("mkdtemp: %s", strerror (errno));
  atexit (cleanup);

  /* A CA, the server's certificate, a client certificate whose key is
   * encrypted with "s3cret", and a PSK file.
   */
  snprintf (cmd, sizeof cmd,
    "set -e; cd '%s'; exec >pki.log 2>&1; mkdir certs; "
    "printf 'cn = Test CA\\nca\\ncert_signing_key\\nexpiration_days = 2\\n' >ca.info; "
    "printf 'cn = localhost\\ndns_name = localhost\\ntls_www_server\\n"
    "signing_key\\nencryption_key\\nexpiration_days = 2\\n' >server.info; "
    "printf 'cn = client\\ntls_www_client\\nsigning_key\\n"
    "encryption_key\\nexpiration_days = 2\\n' >client.info; "
    "certtool --generate-privkey --key-type=ecdsa --outfile certs/ca-key.pem; "
    "certtool --generate-self-signed --load-privkey certs/ca-key.pem "
    "--template ca.info --outfile certs/ca-cert.pem; "
    "certtool --generate-privkey --key-type=ecdsa --outfile certs/server-key.pem; "
    "certtool --generate-certificate --load-ca-certificate certs/ca-cert.pem "
    "--load-ca-privkey certs/ca-key.pem --load-privkey certs/server-key.pem "
    "--template server.info --outfile certs/server-cert.pem; "
    "certtool --generate-privkey --key-type=ecdsa --pkcs8 --password=s3cret "
    "--outfile enc-key.pem; "
    "certtool --generate-certificate --load-ca-certificate certs/ca-cert.pem "
    "--load-ca-privkey certs/ca-key.pem --load-privkey enc-key.pem "
    "--password=s3cret --template client.info --outfile enc-cert.pem; "
    "echo alice:00112233445566778899aabbccddeeff >keys.psk",
    dir);
  if (system (cmd) != 0)
    FAIL ("making the test PKI failed");
  snprintf (psk_arg, sizeof psk_arg, "--tls-psk=%s/keys.psk", dir);
  snprintf (certs_arg, sizeof certs_arg, "--tls-certificates=%s/certs", dir);

  /* 1. PSK from memory. */
  {
    char *argv[] = { NBDKIT, "--tls=require", psk_arg, "memory", "1M", NULL };
    unsigned char wrong[16];

    h = tu_create ();
    CHECK_OK (nbd_set_tls (h, LIBNBD_TLS_REQUIRE));
    CHECK_ERR (rnbd_set_tls_psk (h, "alice", key, 0), EINVAL,
               "rnbd_set_tls_psk: key: the key is empty: Invalid argument");
    CHECK_OK (rnbd_set_tls_psk (h, "alice", key, sizeof key));
    CHECK_OK (nbd_connect_command (h, argv));
    check_io (h);
    /* Settings are fixed once connected. */
    CHECK_INT (rnbd_set_tls_psk (h, "alice", key, sizeof key), -1);
    CHECK_INT (nbd_get_errno (), EINVAL);
    nbd_close (h);

    memcpy (wrong, key, sizeof wrong);
    wrong[0] ^= 1;
    h = tu_create ();
    CHECK_OK (nbd_set_tls (h, LIBNBD_TLS_REQUIRE));
    CHECK_OK (rnbd_set_tls_psk (h, "alice", wrong, sizeof wrong));
    CHECK_INT (nbd_connect_command (h, argv), -1);
    CHECK_INT (nbd_aio_is_dead (h), 1);
    nbd_close (h);
  }

  /* 2. X.509 from memory, the server asking for a client certificate:
   * the right password, a wrong one, none.
   */
  ca = slurp ("certs/ca-cert.pem", &calen);
  cert = slurp ("enc-cert.pem", &certlen);
  ekey = slurp ("enc-key.pem", &ekeylen);
  for (i = 0; i < 3; i++) {
    char *argv[] = { NBDKIT, "--tls=require", "--tls-verify-peer", certs_arg,
                     "memory", "1M", NULL };
    h = tu_create ();
    CHECK_OK (nbd_set_tls (h, LIBNBD_TLS_REQUIRE));
    CHECK_OK (nbd_set_tls_hostname (h, "localhost"));
    CHECK_OK (rnbd_set_tls_ca_pem (h, ca, calen));
    CHECK_OK (rnbd_set_tls_client_pem (h, cert, certlen, ekey, ekeylen));
    if (i == 0)
      CHECK_OK (rnbd_set_tls_key_password (h, "s3cret"));
    else if (i == 1)
      CHECK_OK (rnbd_set_tls_key_password (h, "wrong"));
    if (i == 0) {
      CHECK_OK (nbd_connect_command (h, argv));
      check_io (h);
    }
    else {
      CHECK_INT (nbd_connect_command (h, argv), -1);
      if (strstr (tu_errmsg (), "client-key.pem (in memory)") == NULL)
        FAIL ("password case %d: unexpected error: %s", i, tu_errmsg ());
    }
    nbd_close (h);
  }

  /* A CA that is not PEM fails the connect, naming the part. */
  {
    char *argv[] = { NBDKIT, "--tls=require", certs_arg, "memory", "1M", NULL };
    h = tu_create ();
    CHECK_OK (nbd_set_tls (h, LIBNBD_TLS_REQUIRE));
    CHECK_OK (rnbd_set_tls_ca_pem (h, "not pem", 7));
    CHECK_INT (nbd_connect_command (h, argv), -1);
    if (strstr (tu_errmsg (), "ca-cert.pem (in memory)") == NULL)
      FAIL ("bad CA: unexpected error: %s", tu_errmsg ());
    nbd_close (h);
  }

  free (ca);
  free (cert);
  free (ekey);
  return 0;
}
