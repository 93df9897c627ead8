/*
 * memload: the Tideway test guest's workload (docs/guest.md).
 *
 * It keeps a memory region whose every page has content that is a pure
 * function of (page index, version), rewrites pages at a set rate and keeps
 * re-verifying them. After a live migration, a page the migration lost or
 * sent stale no longer matches its expected version and is counted as a
 * checksum error; the heartbeat carries that count out on the serial console
 * and over TCP, so a test sees it without touching the guest.
 *
 * Parameters come from the kernel command line (/proc/cmdline) and can be
 * overridden by arguments of the same form, e.g. `memload tw.mem_mb=16`:
 *   tw.mem_mb=64        size of the region (MiB)
 *   tw.dirty_mbps=8     page rewrite rate (MiB/s; 0 = never rewrite)
 *   tw.verify_mbps=16   verification rate (MiB/s; 0 = never verify)
 *   tw.hot_pct=10       share of pages in the hot set
 *   tw.hot_write_pct=80 share of rewrites that go to the hot set
 *   tw.hb_ms=100        heartbeat period (ms)
 *   tw.port=7000        TCP port streaming the heartbeat (0 = no server)
 *   tw.seed=1           content seed (changes every page's content)
 *   tw.run_s=0          exit after this many seconds (0 = run forever)
 *   tw.corrupt=0        self-test: after the fill, silently damage this many
 *                       pages (as a lost migration update would); with
 *                       tw.dirty_mbps=0 the verifier must then report exactly
 *                       that many errors (a rewrite may repair one first)
 *
 * Page classes (fixed by a hash of the page index, so a dump has a known mix
 * for the codec to find):
 *   10% zero pages      always all-zero (zero-block detection)
 *   15% duplicate pages whole page = one of 32 patterns x 4 versions
 *                       (CBR whole-page hits)
 *   15% full rewrites   every version is fresh random data (nothing to find)
 *   60% small edits     a per-page random base with a 16-byte header
 *                       (index, version) and a 64-byte patch whose place and
 *                       bytes depend on the version (page deltas); their last
 *                       1 KiB is one of 64 shared blocks (CBR sub-block hits)
 *
 * Heartbeat line (one per tw.hb_ms, on stdout and to every TCP client):
 *   TW-HB seq=N t_ms=N verified=N errors=N writes=N
 * seq counts heartbeats from 1, t_ms is CLOCK_MONOTONIC in ms (time since
 * guest boot), verified and writes are page counts, errors counts pages found
 * not matching their expected content. Other lines start with TW-.
 *
 * Bounded by design: fixed memory, at most 8 TCP clients, a line that a
 * client cannot take at once is dropped for that client (seq shows the gap)
 * rather than queued, and rewrite/verify catch-up is capped per tick.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define WORDS (PAGE / 8u)
#define MAX_CLIENTS 8
#define TICK_MS 10
#define MAX_ERR_REPORTS 20

enum { C_ZERO, C_DUP, C_FULL, C_EDIT };

struct params {
  unsigned long mem_mb, dirty_mbps, verify_mbps, hot_pct, hot_write_pct;
  unsigned long hb_ms, port, seed, run_s, corrupt;
};

static struct params P = {64, 8, 16, 10, 80, 100, 7000, 1, 0, 0};

/* splitmix64: a cheap, well-mixed generator; the page content generator and
 * the page classifier both use it so content needs no stored state. */
static inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

static void fill_random(uint64_t *w, unsigned n, uint64_t seed) {
  uint64_t s = mix64(seed);
  for (unsigned k = 0; k < n; k++) w[k] = mix64(s + k);
}

static int page_class(uint64_t idx) {
  unsigned r = (unsigned)(mix64(idx ^ (P.seed << 40) ^ 0xC1A55ull) % 100);
  if (r < 10) return C_ZERO;
  if (r < 25) return C_DUP;
  if (r < 40) return C_FULL;
  return C_EDIT;
}

/* The expected content of page idx at version ver. Domain tags keep the
 * seeds of the different kinds of block apart. */
static void make_page(uint64_t idx, uint32_t ver, uint64_t *w) {
  const uint64_t s = P.seed << 48;
  switch (page_class(idx)) {
  case C_ZERO:
    memset(w, 0, PAGE);
    return;
  case C_DUP: {
    uint64_t pat = mix64(idx ^ s ^ 0xD0Bull) % 32;
    fill_random(w, WORDS, s ^ (1ull << 44) ^ (pat << 8) ^ (ver % 4));
    return;
  }
  case C_FULL:
    fill_random(w, WORDS, s ^ (2ull << 44) ^ (idx << 20) ^ ver);
    return;
  default: {
    /* base: 3 KiB unique to the page + 1 KiB shared with other pages */
    fill_random(w, WORDS - 128, s ^ (3ull << 44) ^ idx);
    uint64_t blk = mix64(idx ^ s ^ 0x5B1ull) % 64;
    fill_random(w + WORDS - 128, 128, s ^ (4ull << 44) ^ blk);
    w[0] = 0x54574D454D4C4431ull ^ idx; /* "TWMEMLD1" ^ idx */
    w[1] = ver;
    /* 8-word patch somewhere in the unique part after the header */
    uint64_t h = mix64((idx << 20) ^ ver ^ s ^ 0xED17ull);
    unsigned off = 2 + (unsigned)(h % (WORDS - 128 - 2 - 8));
    fill_random(w + off, 8, h);
    return;
  }
  }
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Parse "tw.key=value" words; unknown words are ignored (the kernel command
 * line carries many). */
static void parse_word(const char *w) {
  static const struct { const char *k; unsigned long *v; } keys[] = {
      {"tw.mem_mb=", &P.mem_mb},       {"tw.dirty_mbps=", &P.dirty_mbps},
      {"tw.verify_mbps=", &P.verify_mbps}, {"tw.hot_pct=", &P.hot_pct},
      {"tw.hot_write_pct=", &P.hot_write_pct}, {"tw.hb_ms=", &P.hb_ms},
      {"tw.port=", &P.port},           {"tw.seed=", &P.seed},
      {"tw.run_s=", &P.run_s},         {"tw.corrupt=", &P.corrupt},
  };
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    size_t n = strlen(keys[i].k);
    if (strncmp(w, keys[i].k, n) == 0) {
      char *end;
      errno = 0;
      unsigned long v = strtoul(w + n, &end, 10);
      if (errno == 0 && end != w + n && *end == '\0')
        *keys[i].v = v;
      else
        fprintf(stderr, "TW-WARN bad value in '%s', ignored\n", w);
    }
  }
}

static void parse_cmdline(void) {
  char buf[4096];
  FILE *f = fopen("/proc/cmdline", "r");
  if (!f) return; /* not in a guest (host test run): arguments only */
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  for (char *save = NULL, *t = strtok_r(buf, " \t\n", &save); t;
       t = strtok_r(NULL, " \t\n", &save))
    parse_word(t);
}

static int clients[MAX_CLIENTS];

static int open_server(unsigned port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_ANY)};
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Accept new clients and notice closed ones; called every tick. */
static void service_clients(int lfd) {
  for (;;) {
    int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) break;
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int slot = -1;
    for (int i = 0; i < MAX_CLIENTS; i++)
      if (clients[i] < 0) { slot = i; break; }
    if (slot < 0) { close(c); continue; } /* full: refuse, stay bounded */
    clients[slot] = c;
  }
  char junk[256];
  for (int i = 0; i < MAX_CLIENTS; i++) {
    if (clients[i] < 0) continue;
    ssize_t r = recv(clients[i], junk, sizeof junk, MSG_DONTWAIT);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      close(clients[i]);
      clients[i] = -1;
    }
  }
}

static void emit(const char *line, size_t len) {
  /* serial console: a full write, retried; the console never blocks long */
  for (size_t off = 0; off < len;) {
    ssize_t w = write(1, line + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    off += (size_t)w;
  }
  for (int i = 0; i < MAX_CLIENTS; i++) {
    if (clients[i] < 0) continue;
    ssize_t w = send(clients[i], line, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue; /* drop line */
    if (w < 0 || (size_t)w != len) { /* error or torn line: drop the client */
      close(clients[i]);
      clients[i] = -1;
    }
  }
}

int main(int argc, char **argv) {
  parse_cmdline();
  for (int i = 1; i < argc; i++) parse_word(argv[i]);
  if (P.mem_mb == 0 || P.mem_mb > 1u << 20 || P.hb_ms == 0 || P.port > 65535 ||
      P.hot_pct == 0 || P.hot_pct > 100 || P.hot_write_pct > 100) {
    fprintf(stderr, "TW-ERROR bad parameters\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);

  const uint64_t npages = (uint64_t)P.mem_mb * (1u << 20) / PAGE;
  /* MAP_POPULATE + mlock: the region is resident from the start, so the
   * dump and the migration see all of it and the guest never pages. */
  uint64_t *mem = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  uint32_t *ver = calloc(npages, sizeof *ver);
  uint64_t *scratch = aligned_alloc(64, PAGE);
  if (mem == MAP_FAILED || !ver || !scratch) {
    fprintf(stderr, "TW-ERROR cannot allocate %lu MiB\n", P.mem_mb);
    return 1;
  }
  (void)mlock(mem, npages * PAGE); /* best effort */

  const uint64_t t0 = now_ms();
  printf("TW-START mem_mb=%lu pages=%llu dirty_mbps=%lu verify_mbps=%lu hot_pct=%lu "
         "hot_write_pct=%lu port=%lu seed=%lu t_ms=%llu\n",
         P.mem_mb, (unsigned long long)npages, P.dirty_mbps, P.verify_mbps, P.hot_pct,
         P.hot_write_pct, P.port, P.seed, (unsigned long long)t0);
  for (uint64_t i = 0; i < npages; i++) make_page(i, 0, mem + i * WORDS);
  const uint64_t t1 = now_ms();
  printf("TW-FILLED pages=%llu fill_ms=%llu\n", (unsigned long long)npages,
         (unsigned long long)(t1 - t0));

  /* Self-test: damage distinct pages (consecutive from a random start, one
   * byte each; a zero page gets a non-zero byte) without updating ver[]. */
  if (P.corrupt > npages) P.corrupt = npages;
  for (uint64_t k = 0, s = mix64(t1) % npages; k < P.corrupt; k++) {
    unsigned char *b = (unsigned char *)(mem + ((s + k) % npages) * WORDS);
    b[100] ^= 0x5A;
  }
  if (P.corrupt) printf("TW-CORRUPTED pages=%lu\n", P.corrupt);

  for (int i = 0; i < MAX_CLIENTS; i++) clients[i] = -1;
  int lfd = -1;
  if (P.port) {
    lfd = open_server((unsigned)P.port);
    if (lfd < 0) printf("TW-WARN cannot listen on port %lu: %s\n", P.port, strerror(errno));
  }

  /* The hot set is spread over the region with a stride coprime to npages
   * (a cheap permutation), so hot pages are not one contiguous run. */
  uint64_t nhot = npages * P.hot_pct / 100;
  if (nhot == 0) nhot = 1;
  uint64_t stride = 0x9E3779B1ull % npages;
  for (;;) {
    uint64_t a = stride ? stride : 1, b = npages;
    while (b) { uint64_t t = a % b; a = b; b = t; }
    if (a == 1 && stride) break;
    stride++;
  }

  /* Rates in pages per ms, kept as budgets so any TCG slowness shows up as a
   * lower achieved rate (writes=) rather than a burst later: catch-up is
   * capped to 10 ticks' worth. */
  const double write_ppms = (double)P.dirty_mbps * (1u << 20) / PAGE / 1000.0;
  const double verify_ppms = (double)P.verify_mbps * (1u << 20) / PAGE / 1000.0;
  double write_budget = 0, verify_budget = 0;
  uint64_t rng = mix64(P.seed ^ t1), vcursor = 0;
  uint64_t seq = 0, verified = 0, errors = 0, writes = 0;
  uint64_t last = now_ms(), next_hb = last;

  for (;;) {
    uint64_t now = now_ms();
    double dt = (double)(now - last);
    last = now;
    write_budget += write_ppms * dt;
    verify_budget += verify_ppms * dt;
    if (write_budget > write_ppms * TICK_MS * 10) write_budget = write_ppms * TICK_MS * 10;
    if (verify_budget > verify_ppms * TICK_MS * 10) verify_budget = verify_ppms * TICK_MS * 10;

    for (; write_budget >= 1.0; write_budget -= 1.0) {
      rng = mix64(rng);
      uint64_t idx;
      if (rng % 100 < P.hot_write_pct)
        idx = ((rng >> 8) % nhot) * stride % npages;
      else
        idx = (rng >> 8) % npages;
      ver[idx]++;
      make_page(idx, ver[idx], mem + idx * WORDS);
      writes++;
    }
    for (; verify_budget >= 1.0; verify_budget -= 1.0) {
      uint64_t idx = vcursor;
      vcursor = (vcursor + 1) % npages;
      make_page(idx, ver[idx], scratch);
      if (memcmp(scratch, mem + idx * WORDS, PAGE) != 0) {
        errors++;
        if (errors <= MAX_ERR_REPORTS) {
          const uint64_t *p = mem + idx * WORDS;
          printf("TW-ERROR page=%llu class=%d expected_ver=%u word0=%016llx word1=%016llx\n",
                 (unsigned long long)idx, page_class(idx), ver[idx],
                 (unsigned long long)p[0], (unsigned long long)p[1]);
        }
        memcpy(mem + idx * WORDS, scratch, PAGE); /* repair: count each loss once */
      }
      verified++;
    }

    if (lfd >= 0) service_clients(lfd);
    if (now >= next_hb) {
      char line[160];
      int n = snprintf(line, sizeof line,
                       "TW-HB seq=%llu t_ms=%llu verified=%llu errors=%llu writes=%llu\n",
                       (unsigned long long)++seq, (unsigned long long)now,
                       (unsigned long long)verified, (unsigned long long)errors,
                       (unsigned long long)writes);
      emit(line, (size_t)n);
      next_hb += P.hb_ms;
      if (next_hb <= now) next_hb = now + P.hb_ms; /* after a pause: no burst */
    }
    if (P.run_s && now - t1 >= P.run_s * 1000u) {
      printf("TW-EXIT errors=%llu\n", (unsigned long long)errors);
      return errors ? 1 : 0;
    }
    /* Sleep to the next tick; poll on the listener so a connect is served
     * within a tick. */
    struct pollfd pfd = {.fd = lfd, .events = POLLIN};
    uint64_t after = now_ms();
    int wait = after - now >= TICK_MS ? 0 : (int)(TICK_MS - (after - now));
    poll(&pfd, lfd >= 0 ? 1 : 0, wait);
  }
}
