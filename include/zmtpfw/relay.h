/* relay: moves bytes from one side's input to the other side's output,
 * asking the ZMTP parser what they are and the pickle scanner whether data
 * frames may pass. Frame bodies move between evbuffers without copying. */
#ifndef ZMTPFW_RELAY_H
#define ZMTPFW_RELAY_H

#include "zmtpfw/conn.h"

/* Set up both directions' parse state for a new connection. */
int relay_init(struct conn *c) __attribute__((warn_unused_result));
void relay_free(struct conn *c);

/* The route's config was replaced (reload): new frame limits apply from the
 * next header, new mode, trust and scanning from the next client message. */
void relay_reconfigure(struct conn *c);

/* Process what `src` has read for direction `d`. Returns 0, or -1 when the
 * connection must close (c->close_reason says why; already logged). */
int relay_process(struct conn *c, struct dir *d, struct side *src, struct side *dst)
	__attribute__((warn_unused_result));

/* How many bytes of d's current frame may move socket to socket without
 * being read: the frame's verdict and its message's are known, nothing of
 * it waits in a buffer, and it goes straight to the other side. 0 when the
 * bytes must still pass through the parser. */
uint64_t relay_splice_len(const struct conn *c, const struct dir *d, const struct side *src);

/* n such bytes were moved in the kernel: advance the parse state past them
 * (and finish the frame, and maybe the message, on its last byte). */
void relay_spliced(struct conn *c, struct dir *d, uint64_t n);

#endif
