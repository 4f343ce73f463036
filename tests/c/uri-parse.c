/* How nbd_aio_connect_uri cuts a URI into its parts (RFC 3986, as
 * libnbd 1.22 does with libxml2's parser): schemes in any case, user
 * info with and without a host, IP literals, ports (empty, 0, too large,
 * not numeric), percent-decoding, the export name, the query, the
 * fragment, and the error for what does not parse.  A differential test:
 * each case holds the outcome libnbd 1.22.2 gives, so that the same
 * program passes on the oracle and on ours.
 *
 * In a URI template "@P" stands for a free TCP port on 127.0.0.1 and ::1
 * and "@S" for a Unix socket path; both listen and never accept (port
 * 10809 too, when free), so a URI that parses starts connecting and the
 * handle shows what it took from the URI.  The outcome is one line:
 *
 *   err ERRNO MESSAGE      refused: nbd_aio_connect_uri's errno and error
 *   uri GET_URI user=U export=E tls=T hostname=H verify=V conn=ERRNO
 *                          accepted: nbd_get_uri, nbd_get_tls_username
 *                          ("-" for none), nbd_get_export_name,
 *                          nbd_get_tls, nbd_get_tls_hostname,
 *                          nbd_get_tls_verify_peer, and the errno of
 *                          nbd_aio_connect_uri (0: connecting)
 *
 * The port and socket path are written back as "@P" and "@S".
 *
 * With URI_PARSE_PRINT=1 in the environment the program prints each
 * template and its outcome instead of checking them: run it on both
 * libraries and diff the output to see every difference at once.
 */
#include "test-util.h"

#include <stdbool.h>
#include <netinet/in.h>
#include <arpa/inet.h>

struct uri_case {
  const char *uri;
  /* What libnbd 1.22.2 gives. */
  const char *expected;
  /* What our library gives where it differs on purpose (README,
   * "Deliberate differences"), else NULL.
   */
  const char *ours;
};

static const struct uri_case cases[] = {
  { "NBD://127.0.0.1:@P/e",
    "uri nbd://127.0.0.1:@P/e user=- export=e tls=0 hostname=127.0.0.1 "
    "verify=1 conn=0",
    NULL },
  { "nBdS+uNiX:///e?socket=@S",
    "uri nbds+unix:///e?socket=@S user=- export=e tls=2 hostname= verify=1 "
    "conn=0",
    NULL },
  { "nbd://alice@127.0.0.1:@P/e",
    "uri nbd://alice@127.0.0.1:@P/e user=alice export=e tls=0 "
    "hostname=127.0.0.1 verify=1 conn=0",
    NULL },
  { "nbd://alice:secret@127.0.0.1:@P/e",
    "uri nbd://alice:secret@127.0.0.1:@P/e user=alice:secret export=e "
    "tls=0 hostname=127.0.0.1 verify=1 conn=0",
    NULL },
  /* An empty user info: libnbd 1.22.2 takes the rest of the URI
   * as the user name; we take none. */
  { "nbd://@127.0.0.1:@P/",
    "uri nbd://%40127.0.0.1:@P%2F@127.0.0.1:@P/ user=@127.0.0.1:@P/ "
    "export= tls=0 hostname=127.0.0.1 verify=1 conn=0",
    "uri nbd://127.0.0.1:@P/ user=- export= tls=0 hostname=127.0.0.1 "
    "verify=1 conn=0" },
  { "nbd://a%40b%3Ac@127.0.0.1:@P/",
    "uri nbd://a%40b:c@127.0.0.1:@P/ user=a@b:c export= tls=0 "
    "hostname=127.0.0.1 verify=1 conn=0",
    NULL },
  { "nbd://u_x~!$&'()*+,;=:@127.0.0.1:@P/",
    "uri nbd://u_x~!$&'()*+,;=:@127.0.0.1:@P/ user=u_x~!$&'()*+,;=: "
    "export= tls=0 hostname=127.0.0.1 verify=1 conn=0",
    NULL },
  { "nbd://a@b@127.0.0.1:@P/",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://a@b@127.0.0.1:@P/: Invalid argument",
    NULL },
  { "nbd://user%zz@127.0.0.1:@P/",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://user%zz@127.0.0.1:@P/: Invalid argument",
    NULL },
  { "nbd://us er@127.0.0.1:@P/",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: nbd://us "
    "er@127.0.0.1:@P/: Invalid argument",
    NULL },
  { "nbd+unix://alice@/e?socket=@S",
    "uri nbd+unix://alice@/e?socket=@S user=alice export=e tls=0 hostname= "
    "verify=1 conn=0",
    NULL },
  { "nbd+unix://alice:pw@/?socket=@S",
    "uri nbd+unix://alice:pw@/?socket=@S user=alice:pw export= tls=0 "
    "hostname= verify=1 conn=0",
    NULL },
  { "nbd://[::1]:@P/e",
    "uri nbd://[::1]:@P/e user=- export=e tls=0 hostname=::1 verify=1 conn=0",
    NULL },
  { "nbd://alice@[::1]:@P/",
    "uri nbd://alice@[::1]:@P/ user=alice export= tls=0 hostname=::1 "
    "verify=1 conn=0",
    NULL },
  { "nbd://[::1]:@P",
    "uri nbd://[::1]:@P/ user=- export= tls=0 hostname=::1 verify=1 conn=0",
    NULL },
  { "nbd://[::ffff:127.0.0.1]:@P/",
    "uri nbd://[::ffff:127.0.0.1]:@P/ user=- export= tls=0 "
    "hostname=::ffff:127.0.0.1 verify=1 conn=0",
    NULL },
  { "nbd://[%3A%3A1]:@P/",
    "uri nbd://[::1]:@P/ user=- export= tls=0 hostname=::1 verify=1 conn=0",
    NULL },
  { "nbd://[localhost]:@P/",
    "uri nbd://localhost:@P/ user=- export= tls=0 hostname=localhost "
    "verify=1 conn=0",
    NULL },
  { "nbd://[::1",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: nbd://[::1: "
    "Invalid argument",
    NULL },
  { "nbd://[:@P/",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: nbd://[:@P/: "
    "Invalid argument",
    NULL },
  { "nbd://[::1]x/",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: nbd://[::1]x/: "
    "Invalid argument",
    NULL },
  { "nbd://::1/",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: nbd://::1/: "
    "Invalid argument",
    NULL },
  { "nbd://%5B::1%5D:@P/",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://%5B::1%5D:@P/: Invalid argument",
    NULL },
  { "nbd://127.0.0.1:/e",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:/e: Invalid argument",
    NULL },
  { "nbd://127.0.0.1:0/e",
    "uri nbd://127.0.0.1:10809/e user=- export=e tls=0 hostname=127.0.0.1 "
    "verify=1 conn=0",
    NULL },
  { "nbd://127.0.0.1:00@P/e",
    "uri nbd://127.0.0.1:@P/e user=- export=e tls=0 hostname=127.0.0.1 "
    "verify=1 conn=0",
    NULL },
  { "nbd://127.0.0.1:@P:1/e",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:@P:1/e: Invalid argument",
    NULL },
  { "nbd://127.0.0.1:2147483648/e",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:2147483648/e: Invalid argument",
    NULL },
  { "nbd://127.0.0.1:4294967296/e",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:4294967296/e: Invalid argument",
    NULL },
  { "nbd://127.0.0.1:4294977105/e",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:4294977105/e: Invalid argument",
    NULL },
  { "nbd://127.0.0.1:99999999999999999999/e",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:99999999999999999999/e: Invalid argument",
    NULL },
  { "nbd://127.0.0.1:12a/e",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:12a/e: Invalid argument",
    NULL },
  { "nbd://127.0.0.1:-1/e",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:-1/e: Invalid argument",
    NULL },
  { "nbd://127.0.0.1:+1/e",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:+1/e: Invalid argument",
    NULL },
  { "nbd://:@P/e",
    "uri nbd://localhost:10809/e user=- export=e tls=0 hostname=localhost "
    "verify=1 conn=0",
    NULL },
  { "nbd://%31%32%37.0.0.1:@P/e",
    "uri nbd://127.0.0.1:@P/e user=- export=e tls=0 hostname=127.0.0.1 "
    "verify=1 conn=0",
    NULL },
  { "nbd://LOCALHOST:@P/e",
    "uri nbd://LOCALHOST:@P/e user=- export=e tls=0 hostname=LOCALHOST "
    "verify=1 conn=0",
    NULL },
  { "nbd://127.0.0.1:@P/a%20b%2Fc%7e",
    "uri nbd://127.0.0.1:@P/a%20b/c~ user=- export=a b/c~ tls=0 "
    "hostname=127.0.0.1 verify=1 conn=0",
    NULL },
  { "nbd://127.0.0.1:@P//double",
    "uri nbd://127.0.0.1:@P//double user=- export=/double tls=0 "
    "hostname=127.0.0.1 verify=1 conn=0",
    NULL },
  { "nbd://127.0.0.1:@P/a/../b/./c",
    "uri nbd://127.0.0.1:@P/a/../b/./c user=- export=a/../b/./c tls=0 "
    "hostname=127.0.0.1 verify=1 conn=0",
    NULL },
  { "nbd://127.0.0.1:@P/%2e%2e/x",
    "uri nbd://127.0.0.1:@P/../x user=- export=../x tls=0 "
    "hostname=127.0.0.1 verify=1 conn=0",
    NULL },
  /* A NUL in the export name: libnbd 1.22.2 cuts the name
   * there; we refuse the URI. */
  { "nbd://127.0.0.1:@P/a%00b",
    "uri nbd://127.0.0.1:@P/a user=- export=a tls=0 hostname=127.0.0.1 "
    "verify=1 conn=0",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:@P/a%00b: Invalid argument" },
  { "nbd://127.0.0.1:@P/%zz",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:@P/%zz: Invalid argument",
    NULL },
  { "nbd://127.0.0.1:@P/e%2",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:@P/e%2: Invalid argument",
    NULL },
  { "nbd://127.0.0.1:@P/a b",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:@P/a b: Invalid argument",
    NULL },
  { "nbd://127.0.0.1:@P/a|b",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:@P/a|b: Invalid argument",
    NULL },
  { "nbd://127.0.0.1:@P/a\\b",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:@P/a\\b: Invalid argument",
    NULL },
  { "nbd://127.0.0.1:@P/a[b",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:@P/a[b: Invalid argument",
    NULL },
  { "nbd://127.0.0.1:@P/\303\251",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:@P/\303\251: Invalid argument",
    NULL },
  { "nbd://127.0.0.1:@P/a\011b",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:@P/a\011b: Invalid argument",
    NULL },
  { " nbd://127.0.0.1:@P/e",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI:  "
    "nbd://127.0.0.1:@P/e: Invalid argument",
    NULL },
  { "nbd://127.0.0.1:@P/e ",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:@P/e : Invalid argument",
    NULL },
  { "nbd://127.0.0.1:@P/e#frag",
    "uri nbd://127.0.0.1:@P/e user=- export=e tls=0 hostname=127.0.0.1 "
    "verify=1 conn=0",
    NULL },
  { "nbd://127.0.0.1:@P/e?tls-hostname=x#frag",
    "uri nbd://127.0.0.1:@P/e?tls-hostname=x user=- export=e tls=0 "
    "hostname=x verify=1 conn=0",
    NULL },
  { "nbd://127.0.0.1:@P/e#a?b/c:@",
    "uri nbd://127.0.0.1:@P/e user=- export=e tls=0 hostname=127.0.0.1 "
    "verify=1 conn=0",
    NULL },
  { "nbd://127.0.0.1:@P/e#a[b]",
    "uri nbd://127.0.0.1:@P/e user=- export=e tls=0 hostname=127.0.0.1 "
    "verify=1 conn=0",
    NULL },
  { "nbd://127.0.0.1:@P/e#",
    "uri nbd://127.0.0.1:@P/e user=- export=e tls=0 hostname=127.0.0.1 "
    "verify=1 conn=0",
    NULL },
  { "nbd://127.0.0.1:@P/e#fr#ag",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:@P/e#fr#ag: Invalid argument",
    NULL },
  { "nbd://127.0.0.1:@P/e#a b",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:@P/e#a b: Invalid argument",
    NULL },
  { "nbd://127.0.0.1:@P/e?a=b&c=d",
    "uri nbd://127.0.0.1:@P/e user=- export=e tls=0 hostname=127.0.0.1 "
    "verify=1 conn=0",
    NULL },
  { "nbd://127.0.0.1:@P/e?a=b;tls-hostname=h;c=d",
    "uri nbd://127.0.0.1:@P/e?tls-hostname=h user=- export=e tls=0 "
    "hostname=h verify=1 conn=0",
    NULL },
  { "nbd://127.0.0.1:@P/e?a=b;tls-hostname=h&c=d",
    "uri nbd://127.0.0.1:@P/e user=- export=e tls=0 hostname=127.0.0.1 "
    "verify=1 conn=0",
    NULL },
  { "nbd://127.0.0.1:@P/e?tls-hostname=%41%2fb&&=x",
    "uri nbd://127.0.0.1:@P/e?tls-hostname=A/b user=- export=e tls=0 "
    "hostname=A/b verify=1 conn=0",
    NULL },
  { "nbd://127.0.0.1:@P/e?tls-hostname=a=b",
    "uri nbd://127.0.0.1:@P/e?tls-hostname=a=b user=- export=e tls=0 "
    "hostname=a=b verify=1 conn=0",
    NULL },
  { "nbd://127.0.0.1:@P/e?tls-hostname",
    "uri nbd://127.0.0.1:@P/e?tls-hostname= user=- export=e tls=0 "
    "hostname= verify=1 conn=0",
    NULL },
  { "nbd://127.0.0.1:@P/e?a=/?:@",
    "uri nbd://127.0.0.1:@P/e user=- export=e tls=0 hostname=127.0.0.1 "
    "verify=1 conn=0",
    NULL },
  { "nbd://127.0.0.1:@P/e/?/x",
    "uri nbd://127.0.0.1:@P/e/ user=- export=e/ tls=0 hostname=127.0.0.1 "
    "verify=1 conn=0",
    NULL },
  { "nbd://127.0.0.1:@P/e?",
    "uri nbd://127.0.0.1:@P/e user=- export=e tls=0 hostname=127.0.0.1 "
    "verify=1 conn=0",
    NULL },
  { "nbd://127.0.0.1:@P",
    "uri nbd://127.0.0.1:@P/ user=- export= tls=0 hostname=127.0.0.1 "
    "verify=1 conn=0",
    NULL },
  { "nbd://127.0.0.1:@P?tls-hostname=x",
    "uri nbd://127.0.0.1:@P/?tls-hostname=x user=- export= tls=0 "
    "hostname=x verify=1 conn=0",
    NULL },
  { "nbd://127.0.0.1:@P/e?a=%zz",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:@P/e?a=%zz: Invalid argument",
    NULL },
  { "nbd://127.0.0.1:@P/e?a b",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:@P/e?a b: Invalid argument",
    NULL },
  { "nbd://127.0.0.1:@P/e?a=[b]",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:@P/e?a=[b]: Invalid argument",
    NULL },
  { "nbd://127.0.0.1:@P/e?tls-hostname=%",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:@P/e?tls-hostname=%: Invalid argument",
    NULL },
  { "nbd://127.0.0.1:@P/e?tls-hostname=a%2",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: "
    "nbd://127.0.0.1:@P/e?tls-hostname=a%2: Invalid argument",
    NULL },
  { "nbd://127.0.0.1:@P/e?tls-verify-peer=t",
    "uri nbd://127.0.0.1:@P/e user=- export=e tls=0 hostname=127.0.0.1 "
    "verify=1 conn=0",
    NULL },
  { "nbd://127.0.0.1:@P/e?tls-verify-peer=N",
    "uri nbd://127.0.0.1:@P/e?tls-verify-peer=false user=- export=e tls=0 "
    "hostname=127.0.0.1 verify=0 conn=0",
    NULL },
  { "nbd://127.0.0.1:@P/e?tls-verify-peer=maybe",
    "err EINVAL nbd_aio_connect_uri: could not parse tls-verify-peer "
    "parameter, expecting tls-verify-peer=true|false: Invalid argument",
    NULL },
  { "nbds://127.0.0.1:@P/e?tls-hostname=h&tls-verify-peer=no&tls-hostname=g",
    "uri nbds://127.0.0.1:@P/e?tls-hostname=g&tls-verify-peer=false user=- "
    "export=e tls=2 hostname=g verify=0 conn=0",
    NULL },
  { "nbds://127.0.0.1:@P/e?tls-certificates=/c",
    "err EPERM nbd_aio_connect_uri: local file access (tls-certificates) "
    "is not allowed, call nbd_set_uri_allow_local_file to enable this: "
    "Operation not permitted",
    NULL },
  { "nbd://127.0.0.1:@P/e?socket",
    "err EINVAL nbd_aio_connect_uri: socket parameter is incompatible with "
    "\"nbd:\" (did you mean to use \"nbd+unix:///?socket=...\"?): Invalid "
    "argument",
    NULL },
  /* nbd_get_uri: we percent-encode query values; libnbd 1.22.2
   * writes them raw (a URI it cannot parse back). */
  { "nbd+unix:///e?socket=%2Fx%20y",
    "uri nbd+unix:///e?socket=/x y user=- export=e tls=0 hostname= "
    "verify=1 conn=ENOENT",
    "uri nbd+unix:///e?socket=/x%20y user=- export=e tls=0 hostname= "
    "verify=1 conn=ENOENT" },
  { "nbd+unix:///?socket=@S&socket=/b",
    "uri nbd+unix:///?socket=/b user=- export= tls=0 hostname= verify=1 "
    "conn=ENOENT",
    NULL },
  { "nbd+unix:///e?socket=@S#x",
    "uri nbd+unix:///e?socket=@S user=- export=e tls=0 hostname= verify=1 "
    "conn=0",
    NULL },
  { "nbd+unix://?socket=@S",
    "uri nbd+unix:///?socket=@S user=- export= tls=0 hostname= verify=1 "
    "conn=0",
    NULL },
  { "nbd+unix://localhost:99/e?socket=@S",
    "uri nbd+unix:///e?socket=@S user=- export=e tls=0 hostname= verify=1 "
    "conn=0",
    NULL },
  { "nbd+unix:?socket=@S",
    "err EINVAL nbd_aio_connect_uri: URI must begin with 'nbd+unix://': "
    "Invalid argument",
    NULL },
  { "nbd:///e",
    "uri nbd://localhost:10809/e user=- export=e tls=0 hostname=localhost "
    "verify=1 conn=0",
    NULL },
  { "nbd:/e",
    "err EINVAL nbd_aio_connect_uri: URI must begin with 'nbd://': Invalid "
    "argument",
    NULL },
  { "nbd:e",
    "err EINVAL nbd_aio_connect_uri: URI must begin with 'nbd://': Invalid "
    "argument",
    NULL },
  { "nbd:",
    "err EINVAL nbd_aio_connect_uri: URI must begin with 'nbd://': Invalid "
    "argument",
    NULL },
  { "",
    "err EINVAL nbd_aio_connect_uri: NBD URI does not have a scheme: valid "
    "NBD URIs should start with a scheme like nbd://, nbds:// or "
    "nbd+unix://: Invalid argument",
    NULL },
  { "nbd",
    "err EINVAL nbd_aio_connect_uri: NBD URI does not have a scheme: valid "
    "NBD URIs should start with a scheme like nbd://, nbds:// or "
    "nbd+unix://: Invalid argument",
    NULL },
  { "1234",
    "err EINVAL nbd_aio_connect_uri: NBD URI does not have a scheme: valid "
    "NBD URIs should start with a scheme like nbd://, nbds:// or "
    "nbd+unix://: Invalid argument",
    NULL },
  { "/tmp/sock",
    "err EINVAL nbd_aio_connect_uri: NBD URI does not have a scheme: valid "
    "NBD URIs should start with a scheme like nbd://, nbds:// or "
    "nbd+unix://: to open a local socket use \"nbd+unix://?socket=PATH\": "
    "Invalid argument",
    NULL },
  { "//127.0.0.1:@P/e",
    "err EINVAL nbd_aio_connect_uri: NBD URI does not have a scheme: valid "
    "NBD URIs should start with a scheme like nbd://, nbds:// or "
    "nbd+unix://: to open a local socket use \"nbd+unix://?socket=PATH\": "
    "Invalid argument",
    NULL },
  { "/tmp/a b",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: /tmp/a b: "
    "Invalid argument",
    NULL },
  { "1abc:x",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: 1abc:x: Invalid "
    "argument",
    NULL },
  { "a:b c",
    "err EINVAL nbd_aio_connect_uri: unable to parse URI: a:b c: Invalid "
    "argument",
    NULL },
  { "localhost:10809",
    "err EINVAL nbd_aio_connect_uri: unknown NBD URI scheme: localhost: "
    "Invalid argument",
    NULL },
  { "LocalHost",
    "err EINVAL nbd_aio_connect_uri: NBD URI does not have a scheme: valid "
    "NBD URIs should start with a scheme like nbd://, nbds:// or "
    "nbd+unix://: to open a local port use \"nbd://localhost\" or "
    "\"nbd://localhost:PORT\": Invalid argument",
    NULL },
  { "foo://x",
    "err EINVAL nbd_aio_connect_uri: unknown NBD URI scheme: foo: Invalid "
    "argument",
    NULL },
  { "nbd+vsock://abc/",
    "err EINVAL nbd_aio_connect_uri: cannot parse vsock CID from NBD URI: "
    "abc: Invalid argument",
    NULL },
  { "nbd+vsock://[::1]/",
    "err EINVAL nbd_aio_connect_uri: cannot parse vsock CID from NBD URI: "
    "[::1]: Invalid argument",
    NULL },
  { "nbd+ssh:///",
    "err EINVAL nbd_aio_connect_uri: SSH transport requires a server name: "
    "Invalid argument",
    NULL },
};

static char port[16];
static char sockdir[] = "/tmp/uri-parse.XXXXXX";
static char sockpath[64];

/* Replace every NEEDLE in S by REPL, into OUT (of LEN bytes). */
static void
replace (const char *s, const char *needle, const char *repl,
         char *out, size_t len)
{
  size_t n = strlen (needle), used = 0;

  while (*s) {
    const char *add = s;
    size_t alen = 1;

    if (n > 0 && strncmp (s, needle, n) == 0) {
      add = repl;
      alen = strlen (repl);
      s += n;
    }
    else
      s++;
    if (used + alen >= len)
      FAIL ("replace: %s too long", s);
    memcpy (out + used, add, alen);
    used += alen;
  }
  out[used] = '\0';
}

static void
expand (const char *tmpl, char *out, size_t len)
{
  char tmp[1024];

  replace (tmpl, "@P", port, tmp, sizeof tmp);
  replace (tmp, "@S", sockpath, out, len);
}

/* The reverse of expand, for printing what the library said. */
static void
unexpand (const char *s, char *out, size_t len)
{
  char tmp[1024], tmp2[1024], p[20];

  snprintf (p, sizeof p, ":%s", port);
  replace (s, p, ":@P", tmp, sizeof tmp);
  /* getaddrinfo's message quotes the port. */
  snprintf (p, sizeof p, "\"%s\"", port);
  replace (tmp, p, "\"@P\"", tmp2, sizeof tmp2);
  replace (tmp2, sockpath, "@S", out, len);
}

static const char *
errno_name (int e)
{
  switch (e) {
  case 0: return "0";
  case EINVAL: return "EINVAL";
  case EPERM: return "EPERM";
  case ENOENT: return "ENOENT";
  case ECONNREFUSED: return "ECONNREFUSED";
  case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
  case ENETUNREACH: return "ENETUNREACH";
  case ENOTSUP: return "ENOTSUP";
  case EAFNOSUPPORT: return "EAFNOSUPPORT";
  case ENAMETOOLONG: return "ENAMETOOLONG";
  default: {
    static char buf[16];
    snprintf (buf, sizeof buf, "E%d", e);
    return buf;
  }
  }
}

/* Run one URI on a fresh handle; write its outcome into OUT. */
static void
outcome (const char *uri, char *out, size_t len)
{
  struct nbd_handle *h = tu_create ();
  char raw[1024], *s, *user, *export, *hostname;
  int r, e;

  r = nbd_aio_connect_uri (h, uri);
  e = r == -1 ? nbd_get_errno () : 0;
  snprintf (raw, sizeof raw, "%s", r == -1 ? tu_errmsg () : "");
  s = nbd_get_uri (h);
  if (s == NULL) {
    /* Refused before connecting: nothing says where to connect. */
    if (r != -1)
      FAIL ("%s: connected but nbd_get_uri failed: %s", uri, tu_errmsg ());
    snprintf (out, len, "err %s %s", errno_name (e), raw);
  }
  else {
    user = nbd_get_tls_username (h);
    export = nbd_get_export_name (h);
    hostname = nbd_get_tls_hostname (h);
    snprintf (out, len,
              "uri %s user=%s export=%s tls=%d hostname=%s verify=%d conn=%s",
              s, user ? user : "-", export ? export : "-", nbd_get_tls (h),
              hostname ? hostname : "-", nbd_get_tls_verify_peer (h),
              errno_name (e));
    free (user);
    free (export);
    free (hostname);
    free (s);
  }
  nbd_close (h);
  unexpand (out, raw, sizeof raw);
  snprintf (out, len, "%s", raw);
}

/* Listen on a TCP port of ADDR (127.0.0.1 or ::1, FAMILY), never
 * accepting: connecting works and the NBD handshake then waits.  PORT 0
 * picks a free port.  Returns the port, or 0 if it cannot listen there.
 */
static unsigned
listen_tcp (int family, unsigned port)
{
  struct sockaddr_storage ss = { 0 };
  struct sockaddr_in *a4 = (struct sockaddr_in *) &ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *) &ss;
  socklen_t len = family == AF_INET ? sizeof *a4 : sizeof *a6;
  int one = 1;
  int s = socket (family, SOCK_STREAM, 0);

  if (s == -1)
    return 0;
  setsockopt (s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (family == AF_INET) {
    a4->sin_family = AF_INET;
    a4->sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    a4->sin_port = htons (port);
  }
  else {
    setsockopt (s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    a6->sin6_family = AF_INET6;
    a6->sin6_addr = in6addr_loopback;
    a6->sin6_port = htons (port);
  }
  if (bind (s, (struct sockaddr *) &ss, len) == -1 ||
      listen (s, 128) == -1 ||
      getsockname (s, (struct sockaddr *) &ss, &len) == -1) {
    int e = errno;
    close (s);
    errno = e;
    return 0;
  }
  return ntohs (family == AF_INET ? a4->sin_port : a6->sin6_port);
}

static void
remove_socket (void)
{
  unlink (sockpath);
  rmdir (sockdir);
}

/* A Unix socket at sockpath, listening and never accepting; removed at
 * exit.
 */
static void
listen_unix (void)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  int s;

  if (mkdtemp (sockdir) == NULL)
    FAIL ("mkdtemp: %m");
  snprintf (sockpath, sizeof sockpath, "%s/s", sockdir);
  atexit (remove_socket);
  snprintf (sun.sun_path, sizeof sun.sun_path, "%s", sockpath);
  s = socket (AF_UNIX, SOCK_STREAM, 0);
  if (s == -1 ||
      bind (s, (struct sockaddr *) &sun, sizeof sun) == -1 ||
      listen (s, 128) == -1)
    FAIL ("listen on %s: %m", sockpath);
}

int
main (void)
{
  const char *print = getenv ("URI_PARSE_PRINT");
  const char *ours = getenv ("NBD_TEST_OURS");
  char uri[1024], got[2048];
  size_t i;
  int failures = 0;
  unsigned p = 0;
  bool ipv6 = true;

  /* The same free port on 127.0.0.1 and ::1 (when there is IPv6). */
  for (i = 0; i < 20; i++) {
    p = listen_tcp (AF_INET, 0);
    if (p == 0)
      FAIL ("cannot listen on 127.0.0.1: %m");
    if (listen_tcp (AF_INET6, p) != 0)
      break;
    if (errno == EADDRNOTAVAIL || errno == EAFNOSUPPORT) {
      ipv6 = false;
      break;
    }
  }
  snprintf (port, sizeof port, "%u", p);
  /* The default port too, unless a server already listens there (the
   * handshake is never reached either way).
   */
  listen_tcp (AF_INET, 10809);
  listen_tcp (AF_INET6, 10809);
  listen_unix ();

  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *expected = cases[i].expected;

    /* Without IPv6, ::1 cannot be connected to. */
    if (!ipv6 && strstr (cases[i].uri, "[::") != NULL) {
      fprintf (stderr, "skipped without IPv6: %s\n", cases[i].uri);
      continue;
    }
    if (ours && *ours && cases[i].ours)
      expected = cases[i].ours;
    expand (cases[i].uri, uri, sizeof uri);
    outcome (uri, got, sizeof got);
    if (print && *print) {
      printf ("%s\n  %s\n", cases[i].uri, got);
      continue;
    }
    if (strcmp (got, expected) != 0) {
      fprintf (stderr, "FAIL: %s\n  got:      %s\n  expected: %s\n",
               cases[i].uri, got, expected);
      failures++;
    }
  }
  if (failures)
    FAIL ("%d of %zu URIs differ", failures, sizeof cases / sizeof cases[0]);
  return 0;
}
