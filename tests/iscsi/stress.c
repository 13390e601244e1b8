/*
 * Concurrent-client stress for zctarget (issue #3, acceptance 3), built on
 * libiscsi. Several of these run at once, each with its own initiator name,
 * against one LUN:
 *
 *   stress URL INITIATOR ID ITERATIONS SECONDS      # one client
 *   stress URL INITIATOR init-counter               # zero the CAW counter
 *   stress URL INITIATOR read-counter               # print the CAW counter
 *
 * A client (ID 0..7) loops, bounded by ITERATIONS and SECONDS, over:
 *  - WRITE(16) of self-identifying blocks into a region every client shares
 *    (blocks may belong to any client, but must be whole: right LBA, right
 *    checksum — never torn, never the pool's 0xA5 poison);
 *  - READ(16) of shared ranges, each block checked that way (a block torn
 *    by a racing overlapping write must read back whole when read again:
 *    reported, not failed; pool poison or a block that stays broken fails);
 *  - its private stripe: WRITE(16) or WRITE AND VERIFY(16), then READ(16)
 *    must return exactly what it last wrote; VERIFY(16) with BYTCHK=1 must
 *    answer GOOD for the right data and MISCOMPARE for wrong data;
 *  - COMPARE AND WRITE on one shared counter block: read, CAW old → old+1,
 *    retry on MISCOMPARE. The number of successful increments is printed;
 *    the driver checks the counter equals the sum over clients.
 * Exit status 0 only when every check held. Written in C because libiscsi
 * is the client the issue asks for.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#define BS 512
#define SHARED_FIRST 0
#define SHARED_BLOCKS 512
#define STRIPE_FIRST 1024
#define STRIPE_BLOCKS 256
#define COUNTER_LBA 8192
#define MAX_RUN 32
#define MAGIC 0x7a637467u /* "zctg" */

static uint32_t crc32(const unsigned char *p, size_t n)
{
	uint32_t c = 0xffffffffu;
	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
	}
	return ~c;
}

static uint64_t rng_state;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Block layout: magic, client, lba, generation, fill..., crc32 of the rest. */
static void make_block(unsigned char *b, uint32_t client, uint64_t lba, uint64_t gen)
{
	uint32_t magic = MAGIC;
	memcpy(b, &magic, 4);
	memcpy(b + 4, &client, 4);
	memcpy(b + 8, &lba, 8);
	memcpy(b + 16, &gen, 8);
	for (int i = 24; i < BS - 4; i++)
		b[i] = (unsigned char)(client * 31 + gen * 7 + lba + i);
	uint32_t c = crc32(b, BS - 4);
	memcpy(b + BS - 4, &c, 4);
}

/* 0: valid block for `lba`; 1: never written (all zero); -1: corrupt. */
static int check_block(const unsigned char *b, uint64_t lba)
{
	int zero = 1;
	for (int i = 0; i < BS; i++)
		if (b[i]) {
			zero = 0;
			break;
		}
	if (zero)
		return 1;
	uint32_t magic, c;
	uint64_t got_lba;
	memcpy(&magic, b, 4);
	memcpy(&got_lba, b + 8, 8);
	memcpy(&c, b + BS - 4, 4);
	if (magic != MAGIC || got_lba != lba || crc32(b, BS - 4) != c)
		return -1;
	return 0;
}

static struct iscsi_context *login(const char *url, const char *initiator, int *lun, int crc32c)
{
	struct iscsi_context *iscsi = iscsi_create_context(initiator);
	if (!iscsi) {
		fprintf(stderr, "%s: cannot create context\n", initiator);
		exit(2);
	}
	struct iscsi_url *u = iscsi_parse_full_url(iscsi, url);
	if (!u) {
		fprintf(stderr, "%s: bad URL %s: %s\n", initiator, url, iscsi_get_error(iscsi));
		exit(2);
	}
	iscsi_set_targetname(iscsi, u->target);
	iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
	/* Odd clients insist on CRC32C header digests: the digest path runs
	 * end to end under the same load. */
	iscsi_set_header_digest(iscsi, crc32c ? ISCSI_HEADER_DIGEST_CRC32C : ISCSI_HEADER_DIGEST_NONE);
	if (iscsi_full_connect_sync(iscsi, u->portal, u->lun) != 0) {
		fprintf(stderr, "%s: login failed: %s\n", initiator, iscsi_get_error(iscsi));
		exit(2);
	}
	*lun = u->lun;
	iscsi_destroy_url(u);
	return iscsi;
}

static int good(struct scsi_task *t)
{
	return t && t->status == SCSI_STATUS_GOOD;
}

/* The pool fills released buffers with 0xA5: a run of it in read data
 * means a buffer was reused while the data was still being sent. The
 * blocks' own fill never repeats a byte. */
static int poisoned(const unsigned char *b)
{
	int run = 0;
	for (int i = 0; i < BS; i++) {
		run = b[i] == 0xA5 ? run + 1 : 0;
		if (run >= 8)
			return 1;
	}
	return 0;
}

/* Re-reads one block (a few tries, the overlapping write may still be in
 * flight): 1 once it reads whole. */
static int reread_whole(struct iscsi_context *iscsi, int lun, uint64_t lba)
{
	for (int tries = 0; tries < 5; tries++) {
		struct scsi_task *t = iscsi_read16_sync(iscsi, lun, lba, BS, BS, 0, 0, 0, 0, 0);
		int ok = good(t) && t->datain.size == BS && check_block(t->datain.data, lba) >= 0;
		scsi_free_scsi_task(t);
		if (ok)
			return 1;
	}
	return 0;
}

static int failures;
#define FAIL(...)                                                              \
	do {                                                                   \
		fprintf(stderr, __VA_ARGS__);                                  \
		fputc('\n', stderr);                                           \
		failures++;                                                    \
	} while (0)

static uint64_t read_counter(struct iscsi_context *iscsi, int lun, unsigned char *block)
{
	struct scsi_task *t = iscsi_read16_sync(iscsi, lun, COUNTER_LBA, BS, BS, 0, 0, 0, 0, 0);
	uint64_t v = UINT64_MAX;
	if (good(t) && t->datain.size == BS) {
		memcpy(block, t->datain.data, BS);
		memcpy(&v, block, 8);
	}
	scsi_free_scsi_task(t);
	return v;
}

static void counter_block(unsigned char *b, uint64_t v)
{
	memset(b, 0, BS);
	memcpy(b, &v, 8);
	for (int i = 8; i < BS; i++)
		b[i] = (unsigned char)(v + i);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s URL INITIATOR ID ITERATIONS SECONDS | init-counter | read-counter\n", argv[0]);
		return 2;
	}
	int lun;
	int control = strcmp(argv[3], "init-counter") == 0 || strcmp(argv[3], "read-counter") == 0;
	struct iscsi_context *iscsi = login(argv[1], argv[2], &lun, !control && atoi(argv[3]) % 2 == 1);
	unsigned char cur[BS], next[2 * BS];

	if (strcmp(argv[3], "init-counter") == 0) {
		counter_block(cur, 0);
		struct scsi_task *t = iscsi_write16_sync(iscsi, lun, COUNTER_LBA, cur, BS, BS, 0, 0, 1, 0, 0);
		int ok = good(t);
		scsi_free_scsi_task(t);
		iscsi_logout_sync(iscsi);
		iscsi_destroy_context(iscsi);
		return ok ? 0 : 1;
	}
	if (strcmp(argv[3], "read-counter") == 0) {
		uint64_t v = read_counter(iscsi, lun, cur);
		unsigned char want[BS];
		counter_block(want, v);
		iscsi_logout_sync(iscsi);
		iscsi_destroy_context(iscsi);
		if (v == UINT64_MAX || memcmp(want, cur, BS) != 0) {
			fprintf(stderr, "counter block unreadable or torn\n");
			return 1;
		}
		printf("%" PRIu64 "\n", v);
		return 0;
	}
	if (argc < 6) {
		fprintf(stderr, "usage: %s URL INITIATOR ID ITERATIONS SECONDS\n", argv[0]);
		return 2;
	}
	uint32_t id = (uint32_t)atoi(argv[3]);
	long iterations = atol(argv[4]);
	time_t deadline = time(NULL) + atol(argv[5]);
	rng_state = 0x9e3779b97f4a7c15ull ^ ((uint64_t)id << 32) ^ (uint64_t)time(NULL);

	static unsigned char buf[MAX_RUN * BS];
	static uint64_t stripe_gen[STRIPE_BLOCKS];
	uint64_t gen = 1, writes = 0, reads = 0, verified_blocks = 0, caws = 0, miscompares = 0;
	uint64_t torn_reads = 0;
	uint64_t stripe_first = STRIPE_FIRST + (uint64_t)id * STRIPE_BLOCKS;

	for (long it = 0; it < iterations && time(NULL) < deadline && failures == 0; it++, gen++) {
		/* Shared region: write a run of whole, self-identifying blocks. */
		uint32_t n = 1 + rnd() % MAX_RUN;
		uint64_t lba = SHARED_FIRST + rnd() % (SHARED_BLOCKS - n);
		for (uint32_t i = 0; i < n; i++)
			make_block(buf + i * BS, id, lba + i, gen);
		struct scsi_task *t = iscsi_write16_sync(iscsi, lun, lba, buf, n * BS, BS, 0, 0, 0, 0, 0);
		if (!good(t))
			FAIL("client %u: WRITE(16) shared lba %" PRIu64 " failed: %s", id, lba, iscsi_get_error(iscsi));
		scsi_free_scsi_task(t);
		writes++;

		/* Shared region: read another run, every block whole. */
		n = 1 + rnd() % MAX_RUN;
		lba = SHARED_FIRST + rnd() % (SHARED_BLOCKS - n);
		t = iscsi_read16_sync(iscsi, lun, lba, n * BS, BS, 0, 0, 0, 0, 0);
		if (!good(t) || t->datain.size != (int)(n * BS)) {
			FAIL("client %u: READ(16) shared lba %" PRIu64 " failed: %s", id, lba, iscsi_get_error(iscsi));
		} else {
			for (uint32_t i = 0; i < n; i++) {
				const unsigned char *b = t->datain.data + i * BS;
				if (check_block(b, lba + i) >= 0)
					continue;
				if (poisoned(b)) {
					FAIL("client %u: CORRUPT block at lba %" PRIu64
					     ": pool poison (a buffer released while still in use)", id, lba + i);
					continue;
				}
				/* Not whole. A read racing an overlapping write of another
				 * client may see a block half old, half new when the file
				 * volume sits in the page cache (Linux buffered reads do
				 * not lock the page); the medium itself must be whole: it
				 * is re-read alone and must then check out. */
				if (reread_whole(iscsi, lun, lba + i)) {
					torn_reads++;
					fprintf(stderr, "client %u: torn read at lba %" PRIu64
						" under an overlapping write; re-read whole\n", id, lba + i);
				} else {
					FAIL("client %u: CORRUPT block at lba %" PRIu64 " (first bytes %02x %02x %02x %02x)",
					     id, lba + i, b[0], b[1], b[2], b[3]);
				}
			}
			verified_blocks += n;
		}
		scsi_free_scsi_task(t);
		reads++;

		/* Private stripe: write (sometimes WRITE AND VERIFY), read back exactly. */
		n = 1 + rnd() % MAX_RUN;
		uint64_t off = rnd() % (STRIPE_BLOCKS - n);
		for (uint32_t i = 0; i < n; i++) {
			make_block(buf + i * BS, id, stripe_first + off + i, gen);
			stripe_gen[off + i] = gen;
		}
		if (it % 4 == 0)
			t = iscsi_writeverify16_sync(iscsi, lun, stripe_first + off, buf, n * BS, BS, 0, 0, 0, 0);
		else
			t = iscsi_write16_sync(iscsi, lun, stripe_first + off, buf, n * BS, BS, 0, 0, it % 3 == 0, 0, 0);
		if (!good(t))
			FAIL("client %u: write to stripe failed: %s", id, iscsi_get_error(iscsi));
		scsi_free_scsi_task(t);
		writes++;

		uint32_t m = 1 + rnd() % MAX_RUN;
		uint64_t roff = rnd() % (STRIPE_BLOCKS - m);
		t = iscsi_read16_sync(iscsi, lun, stripe_first + roff, m * BS, BS, 0, 0, 0, 0, 0);
		if (!good(t) || t->datain.size != (int)(m * BS)) {
			FAIL("client %u: READ(16) stripe failed: %s", id, iscsi_get_error(iscsi));
		} else {
			for (uint32_t i = 0; i < m; i++) {
				unsigned char want[BS];
				uint64_t g = stripe_gen[roff + i];
				if (g == 0)
					continue; /* not written by this run yet */
				make_block(want, id, stripe_first + roff + i, g);
				if (memcmp(want, t->datain.data + i * BS, BS) != 0)
					FAIL("client %u: CORRUPT stripe block %" PRIu64 ": not what was last written",
					     id, stripe_first + roff + i);
			}
			verified_blocks += m;
		}
		scsi_free_scsi_task(t);
		reads++;

		/* VERIFY(16) BYTCHK=1 of the blocks just written: GOOD, then a
		 * one-byte change must MISCOMPARE. */
		t = iscsi_verify16_sync(iscsi, lun, buf, n * BS, stripe_first + off, 0, 0, 1, BS);
		if (!good(t))
			FAIL("client %u: VERIFY(16) of written data not GOOD: %s", id, iscsi_get_error(iscsi));
		scsi_free_scsi_task(t);
		buf[BS / 2] ^= 0xff;
		t = iscsi_verify16_sync(iscsi, lun, buf, n * BS, stripe_first + off, 0, 0, 1, BS);
		if (!t || t->status != SCSI_STATUS_CHECK_CONDITION || t->sense.key != SCSI_SENSE_MISCOMPARE)
			FAIL("client %u: VERIFY(16) of changed data did not MISCOMPARE", id);
		scsi_free_scsi_task(t);

		/* COMPARE AND WRITE contention on the shared counter. */
		for (int tries = 0; tries < 64; tries++) {
			uint64_t v = read_counter(iscsi, lun, cur);
			if (v == UINT64_MAX) {
				FAIL("client %u: counter read failed", id);
				break;
			}
			counter_block(next, v);
			counter_block(next + BS, v + 1);
			t = iscsi_compareandwrite_sync(iscsi, lun, COUNTER_LBA, next, 2 * BS, BS, 0, 0, 0, 0, 0);
			if (good(t)) {
				caws++;
				scsi_free_scsi_task(t);
				break;
			}
			if (t && t->status == SCSI_STATUS_CHECK_CONDITION && t->sense.key == SCSI_SENSE_MISCOMPARE) {
				miscompares++;
				scsi_free_scsi_task(t);
				continue;
			}
			FAIL("client %u: COMPARE AND WRITE failed: %s", id, iscsi_get_error(iscsi));
			scsi_free_scsi_task(t);
			break;
		}
	}
	iscsi_logout_sync(iscsi);
	iscsi_destroy_context(iscsi);
	printf("client %u: writes %" PRIu64 " reads %" PRIu64 " blocks_verified %" PRIu64
	       " caw %" PRIu64 " caw_miscompares %" PRIu64 " torn_reads %" PRIu64 " failures %d\n",
	       id, writes, reads, verified_blocks, caws, miscompares, torn_reads, failures);
	return failures ? 1 : 0;
}
