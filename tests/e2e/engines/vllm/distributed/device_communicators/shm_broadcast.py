"""Fake vllm.distributed.device_communicators.shm_broadcast: the bytes a
MessageQueue writer sends to its remote (XPUB) readers.

Source: vllm-project/vllm vllm/distributed/device_communicators/
shm_broadcast.py MessageQueue.enqueue: pickle.dumps(obj,
protocol=pickle.HIGHEST_PROTOCOL, buffer_callback=oob) where buffers of
1 MiB or more go out of band; remote readers get
send_multipart([pickle, *buffers]). The object is (method, args, kwargs,
output_rank) from MultiprocExecutor.collective_rpc, method being a str or
cloudpickle.dumps(callable, protocol=HIGHEST).
"""

import pickle

OOB_THRESHOLD = 1024 * 1024


def enqueue_frames(obj):
    bufs = []

    def oob(buf):
        raw = buf.raw()
        if len(raw) < OOB_THRESHOLD:
            return True  # in band
        bufs.append(bytes(raw))
        return False

    first = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL, buffer_callback=oob)
    return [first] + bufs


def dequeue_frames(frames):
    return pickle.loads(frames[0], buffers=frames[1:])
