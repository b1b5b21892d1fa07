/* Unit tests for mem_budget across two event loops: which loop's holder is
 * picked over the budget, and which loop is woken to look. Loop 0 is this
 * thread; loop 1 is a thread driven step by step, so every check is on a
 * state both loops have reached (no timing). */
#include "zmtpfw/mem_budget.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "unit_check.h"

#define MIN (16u << 10) /* conn.c's CONN_READ_MIN */

/* Loop 1: a command from loop 0, run on loop 1's thread, then an answer. */
enum cmd { CMD_NONE, CMD_SET, CMD_RUN, CMD_VICTIM, CMD_QUIT };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static enum cmd cmd;
static uint64_t arg;
static int woken;          /* loop 1's on_wake runs */
static bool victim_is_own; /* CMD_VICTIM's answer */
static struct mem_holder h1;

static void on_wake(void)
{
	woken++;
}

static void *loop1_main(void *p)
{
	struct event_base *base = p;
	int ok = mem_budget_thread_start(1, base, on_wake);
	mem_budget_add(&h1);
	pthread_mutex_lock(&lock);
	for (;;) {
		while (cmd == CMD_NONE)
			pthread_cond_wait(&cond, &lock);
		if (cmd == CMD_QUIT)
			break;
		if (cmd == CMD_SET)
			mem_budget_update(&h1, arg);
		else if (cmd == CMD_RUN) /* what another loop activated runs now */
			event_base_loop(base, EVLOOP_NONBLOCK);
		else if (cmd == CMD_VICTIM)
			victim_is_own = mem_budget_victim(MIN) == &h1;
		cmd = CMD_NONE;
		pthread_cond_broadcast(&cond);
	}
	pthread_mutex_unlock(&lock);
	mem_budget_remove(&h1);
	mem_budget_thread_stop();
	return ok == 0 ? NULL : base;
}

static void loop1(enum cmd c, uint64_t a)
{
	pthread_mutex_lock(&lock);
	cmd = c;
	arg = a;
	pthread_cond_broadcast(&cond);
	while (c != CMD_QUIT && cmd != CMD_NONE)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
}

/* Holders of h0 (loop 0) and h1 (loop 1) bytes, loop 1's bound exact
 * (it looked), then loop 0 looks: what it picks, and whether loop 1 ran
 * its on_wake. */
static void pick(struct mem_holder *h0, uint64_t b0, uint64_t b1, bool *own, bool *woke)
{
	mem_budget_update(h0, b0);
	loop1(CMD_SET, b1);
	loop1(CMD_VICTIM, 0); /* makes loop 1's bound exact */
	loop1(CMD_RUN, 0);    /* and runs off any wake that caused */
	int before = woken;
	*own = mem_budget_victim(MIN) == h0;
	loop1(CMD_RUN, 0);
	*woke = woken > before;
}

int main(void)
{
	struct mem_holder h0;
	struct event_base *b0, *b1;
	pthread_t t;
	bool own, woke;
	void *rc;

	evthread_use_pthreads();
	b0 = event_base_new();
	b1 = event_base_new();
	CHECK(b0 && b1, "event bases");
	CHECK(mem_budget_thread_start(0, b0, on_wake) == 0, "loop 0 starts");
	memset(&h0, 0, sizeof(h0));
	mem_budget_add(&h0);
	pthread_create(&t, NULL, loop1_main, b1);
	mem_budget_set_limit(1024);

	/* Loop 0's holder is the biggest: picked here, nobody woken. */
	pick(&h0, 40u << 10, 20u << 10, &own, &woke);
	CHECK(own && !woke, "own biggest: own %d woke %d", own, woke);

	/* Loop 1's is bigger and worth closing: loop 1 is woken, and picks it. */
	pick(&h0, 1u << 10, 20u << 10, &own, &woke);
	CHECK(!own && woke, "bigger on loop 1: own %d woke %d", own, woke);
	loop1(CMD_VICTIM, 0);
	CHECK(victim_is_own, "loop 1 picks its own holder");

	/* Loop 1's is bigger but under min: nothing on either loop is worth a
	 * close, and waking loop 1 would change nothing (it would walk its
	 * holders on every read of loop 0's while the process stays over). */
	pick(&h0, 1u << 10, 8u << 10, &own, &woke);
	CHECK(!own && !woke, "under min on loop 1: own %d woke %d", own, woke);

	/* Within the budget: nothing picked, nobody woken. */
	mem_budget_set_limit(1u << 30);
	pick(&h0, 1u << 10, 20u << 10, &own, &woke);
	CHECK(!own && !woke, "within budget: own %d woke %d", own, woke);

	loop1(CMD_QUIT, 0);
	pthread_join(t, &rc);
	CHECK(rc == NULL, "loop 1 started");
	mem_budget_remove(&h0);
	mem_budget_thread_stop();
	event_base_free(b1);
	event_base_free(b0);
	libevent_global_shutdown();
	printf("test_mem_budget: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
