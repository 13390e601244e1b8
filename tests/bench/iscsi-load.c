/*
 * iSCSI load generator on libiscsi's asynchronous API, for
 * tests/bench/compare.sh: one session, QD commands in flight, READ(16) or
 * WRITE(16) of BS bytes at random or sequential offsets for SECONDS, then
 * one line:
 *
 *   iops=N mbps=N ios=N errors=N seconds=N
 *
 *   iscsi-load [-w] [-s] [-c] [-b BYTES] [-q QD] [-t SECONDS] [-i INITIATOR] URL
 *     -w  writes (default reads)     -s  sequential (default random)
 *     -c  coalesce: the PDUs queued in one turn of the loop leave together
 *
 * libiscsi's iscsi-perf only reads (and only sequential/random reads of a
 * fixed shape), so writes need this; it is written in C because libiscsi is
 * the initiator. Reads land straight in a per-slot buffer
 * (iscsi_read16_iov_task), writes come from one shared buffer, so the
 * client does no per-command allocation of payload.
 *
 * libiscsi sends every PDU with its own calls on a TCP_NODELAY socket: a
 * write is one send() for its header and one writev() for its data, so two
 * TCP segments, each delivered (on loopback, on the client's CPU) as it is
 * written. With -c the socket is corked (TCP_CORK) while libiscsi writes
 * out what the completions of one turn queued, and uncorked after, so
 * those PDUs leave in as few segments as fit: what Linux's NVMe/TCP host
 * does by sending with MSG_MORE while more requests are queued, and SPDK's
 * host by writing its queued PDUs with one writev. It does not change
 * which PDUs are sent or when libiscsi queues them. Failed commands
 * (non-GOOD status) are counted, and the first few printed on stderr; the
 * exit status is 2 if any failed.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#define MAX_QD 256

struct slot {
	int idx;
	unsigned char *buf;
	struct scsi_iovec iov;
};

static struct iscsi_context *iscsi;
static int lun, write_mode, seq_mode, coalesce, running = 1;
static uint32_t bs = 4096, block;
static uint64_t nblocks, span, cursor, ios, errors, inflight;
static unsigned char *wbuf;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void submit(struct slot *s);

static void done(struct iscsi_context *ctx, int status, void *command_data, void *private_data)
{
	struct slot *s = private_data;
	struct scsi_task *task = command_data;
	(void)ctx;
	inflight--;
	if (status != SCSI_STATUS_GOOD) {
		if (errors < 5)
			fprintf(stderr, "iscsi-load: command failed: status %d: %s\n", status,
				iscsi_get_error(iscsi));
		errors++;
	}
	ios++;
	if (task)
		scsi_free_scsi_task(task);
	if (running)
		submit(s);
}

static void submit(struct slot *s)
{
	uint64_t i = seq_mode ? cursor++ % span : rnd() % span;
	uint64_t lba = i * (bs / block);
	struct scsi_task *t;
	if (write_mode)
		t = iscsi_write16_task(iscsi, lun, lba, wbuf, bs, block, 0, 0, 0, 0, 0, done, s);
	else
		t = iscsi_read16_iov_task(iscsi, lun, lba, bs, block, 0, 0, 0, 0, 0, done, s,
					  &s->iov, 1);
	if (!t) {
		fprintf(stderr, "iscsi-load: cannot queue a command: %s\n", iscsi_get_error(iscsi));
		exit(1);
	}
	inflight++;
}

static int service(int revents)
{
	if (iscsi_service(iscsi, revents) < 0) {
		fprintf(stderr, "iscsi-load: %s\n", iscsi_get_error(iscsi));
		return -1;
	}
	return 0;
}

static int cork(int on)
{
	if (setsockopt(iscsi_get_fd(iscsi), IPPROTO_TCP, TCP_CORK, &on, sizeof(on)) != 0) {
		perror("iscsi-load: TCP_CORK");
		return -1;
	}
	return 0;
}

/* Writes out what is queued with the socket corked, then pushes it. */
static int service_corked(void)
{
	if (cork(1) < 0)
		return -1;
	int r = service(POLLOUT);
	if (cork(0) < 0)
		return -1;
	return r;
}

int main(int argc, char **argv)
{
	int qd = 32, opt;
	double seconds = 10;
	const char *initiator = "iqn.2026-11.io.zctarget:iscsi-load";
	while ((opt = getopt(argc, argv, "wscb:q:t:i:")) != -1) {
		switch (opt) {
		case 'w': write_mode = 1; break;
		case 's': seq_mode = 1; break;
		case 'c': coalesce = 1; break;
		case 'b': bs = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'q': qd = atoi(optarg); break;
		case 't': seconds = atof(optarg); break;
		case 'i': initiator = optarg; break;
		default:
			fprintf(stderr, "usage: %s [-w] [-s] [-c] [-b BYTES] [-q QD] [-t SECONDS] [-i IQN] URL\n", argv[0]);
			return 1;
		}
	}
	if (optind != argc - 1 || qd < 1 || qd > MAX_QD || seconds <= 0 || seconds > 3600 || bs == 0) {
		fprintf(stderr, "usage: %s [-w] [-s] [-c] [-b BYTES] [-q QD<=%d] [-t SECONDS<=3600] [-i IQN] URL\n",
			argv[0], MAX_QD);
		return 1;
	}
	iscsi = iscsi_create_context(initiator);
	struct iscsi_url *u = iscsi ? iscsi_parse_full_url(iscsi, argv[optind]) : NULL;
	if (!u) {
		fprintf(stderr, "iscsi-load: bad URL %s: %s\n", argv[optind], iscsi ? iscsi_get_error(iscsi) : "no context");
		return 1;
	}
	iscsi_set_targetname(iscsi, u->target);
	iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(iscsi, ISCSI_HEADER_DIGEST_NONE);
	if (iscsi_full_connect_sync(iscsi, u->portal, u->lun) != 0) {
		fprintf(stderr, "iscsi-load: login failed: %s\n", iscsi_get_error(iscsi));
		return 1;
	}
	lun = u->lun;
	iscsi_destroy_url(u);

	struct scsi_task *t = iscsi_readcapacity16_sync(iscsi, lun);
	struct scsi_readcapacity16 *rc16 = t && t->status == SCSI_STATUS_GOOD ? scsi_datain_unmarshall(t) : NULL;
	if (!rc16) {
		fprintf(stderr, "iscsi-load: READ CAPACITY(16) failed: %s\n", iscsi_get_error(iscsi));
		return 1;
	}
	block = rc16->block_length;
	nblocks = rc16->returned_lba + 1;
	scsi_free_scsi_task(t);
	if (bs % block) {
		fprintf(stderr, "iscsi-load: -b %u is not a multiple of the %u-byte block\n", bs, block);
		return 1;
	}
	span = nblocks / (bs / block);

	static struct slot slots[MAX_QD];
	if (posix_memalign((void **)&wbuf, 4096, bs))
		return 1;
	memset(wbuf, 0x5a, bs);
	for (int i = 0; i < qd; i++) {
		slots[i].idx = i;
		if (posix_memalign((void **)&slots[i].buf, 4096, bs))
			return 1;
		slots[i].iov.iov_base = slots[i].buf;
		slots[i].iov.iov_len = bs;
	}
	rng ^= (uint64_t)getpid() << 17;

	double start = now(), end = start + seconds, stop_at = 0;
	for (int i = 0; i < qd; i++)
		submit(&slots[i]);
	while (running || inflight > 0) {
		struct pollfd pfd = {.fd = iscsi_get_fd(iscsi), .events = iscsi_which_events(iscsi)};
		int n = poll(&pfd, 1, 100);
		if (n < 0 && errno != EINTR) {
			perror("poll");
			return 1;
		}
		int revents = n > 0 ? pfd.revents : 0;
		if (coalesce) {
			/* Responses first: their callbacks queue the next commands,
			 * which then go out under one cork. */
			if (service(revents & ~POLLOUT) < 0)
				return 1;
			/* Only on a socket that reported readiness: while libiscsi
			 * reconnects, POLLOUT also means "connect finished". */
			if ((revents & (POLLIN | POLLOUT)) && (iscsi_which_events(iscsi) & POLLOUT) &&
			    service_corked() < 0)
				return 1;
		} else if (service(revents) < 0) {
			return 1;
		}
		double t_now = now();
		if (running && t_now >= end) {
			running = 0;
			stop_at = t_now;
			/* what completes while draining is not counted */
			printf("iops=%.0f mbps=%.1f ios=%" PRIu64 " errors=%" PRIu64 " seconds=%.2f\n",
			       ios / (t_now - start), ios * (double)bs / (t_now - start) / 1e6, ios,
			       errors, t_now - start);
			fflush(stdout);
		}
		if (!running && t_now > stop_at + 10) {
			fprintf(stderr, "iscsi-load: %" PRIu64 " commands still in flight 10 s after the end\n", inflight);
			return 1;
		}
	}
	iscsi_logout_sync(iscsi);
	iscsi_destroy_context(iscsi);
	return errors ? 2 : 0;
}
