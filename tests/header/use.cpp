// Uses libnbd.h from C++ (built by run.sh as C++17 with -Wall -Wextra
// -Werror); included twice on purpose.
#include <libnbd.h>
#include <libnbd.h>

#include <cstdio>
#include <type_traits>

static_assert (LIBNBD_CMD_FLAG_FUA == 1u, "LIBNBD_CMD_FLAG_FUA");
static_assert (std::is_same<decltype (LIBNBD_CMD_FLAG_FUA), unsigned>::value,
               "flags are unsigned");
static_assert (std::is_same<decltype (LIBNBD_TLS_REQUIRE), int>::value,
               "enums are int");
static_assert (std::is_same<decltype (&nbd_get_errno), int (*) ()>::value,
               "nbd_get_errno type");

static int completions;

static int
complete (void *user_data, int *)
{
  ++*static_cast<int *> (user_data);
  return 1;
}

int
main ()
{
  nbd_completion_callback cb = {};
  cb.callback = complete;
  cb.user_data = &completions;
  nbd_completion_callback cb2 = { complete, &completions, nullptr };
  struct nbd_handle *h = nullptr;
  int err = 0;

  if (cb.callback (cb.user_data, &err) != 1 || cb2.callback (cb2.user_data, &err) != 1)
    return 1;
  if (completions != 2)
    return 1;
  if (nbd_get_errno () != 0 || nbd_get_error () != nullptr)
    return 1;
#if defined (LIBNBD_HAVE_NBD_CREATE) && defined (LIBNBD_HAVE_NBD_CLOSE)
  h = nbd_create ();
  if (h == nullptr) {
    std::fprintf (stderr, "nbd_create: %s\n", nbd_get_error ());
    return 1;
  }
  nbd_close (h);
#endif
  (void) h;
  return 0;
}
