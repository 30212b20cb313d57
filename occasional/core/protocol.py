"""Control frames between processes, central services and the forkserver.

Every control frame is a plain msgpack array whose first element is one of
the op codes below. User values inside control frames (function blobs, exit
details, kill reasons) are opaque bytes encoded by :mod:`codec`: central never
unpickles user data, so it needs no user module and cannot be crashed by one.

A reason on the wire is ``[kind, detail_bytes]``, except ``linked`` whose
detail is ``[pid_id, os_pid, inner_reason]``, so central can nest reasons
without decoding them.
"""

from __future__ import annotations

# process -> central
SPAWN = 1  # [SPAWN, req, blob, name, link, mon_owner, mon_n, function, sys_path, title, meta]
# meta: None or a map of facts for `occasional ps`: argv (a port), restarts
CONNECT = 2  # [CONNECT, target]
MONITOR = 3  # [MONITOR, owner, n, target]
DEMONITOR = 4  # [DEMONITOR, owner, n]
LINK = 5  # [LINK, req, target]
UNLINK = 6  # [UNLINK, req, target]
TRAP = 7  # [TRAP, req, flag]
KILL = 8  # [KILL, req, target, why_bytes]
REGISTER = 9  # [REGISTER, req, name, target]
UNREGISTER = 10  # [UNREGISTER, req, name]
WHEREIS = 11  # [WHEREIS, req, name]
REGISTERED = 12  # [REGISTERED, req]
PROCESSES = 13  # [PROCESSES, req]
INFO = 14  # [INFO, req, target]
EXIT = 15  # [EXIT, kind, detail_bytes]
STOP = 16  # [STOP, req]
SIGNAL = 17  # [SIGNAL, req, target, reason]: an exit signal, as Erlang's exit/2

# central -> process
REPLY = 30  # [REPLY, req, ok, value]   (error value: [error_name, *args])
PEER = 31  # [PEER, pid_id, os_pid] with the socket attached
PEER_DEAD = 32  # [PEER_DEAD, pid_id]
DOWN = 33  # [DOWN, owner, n, pid_id, os_pid, reason]
EXIT_SIGNAL = 34  # [EXIT_SIGNAL, pid_id, os_pid, reason, sender_ended]
READY = 35  # [READY, pid_id, os_pid]
START_FAILED = 36  # [START_FAILED, error_type_name, message]: a hook failed; central exits

# central <-> forkserver
FORK = 50  # [FORK, pid_id, blob, sys_path, title] with the child's central socket attached
FORKED = 51  # [FORKED, pid_id, os_pid]
REAPED = 52  # [REAPED, os_pid, status]
FORK_FAILED = 53  # [FORK_FAILED, pid_id, error_text]

# process <-> central's journal writer (occasional.durable; handlers installed by
# its central hook, so core never imports durable)
D_SPAWN = 60  # [D_SPAWN, req, id, blob, function, sys_path, title] -> [pid_id, os_pid, exists]
D_SEND = 61  # [D_SEND, req, dest_id, body, sender_id, send_seq, events]; req 0: no ack
D_EVENTS = 62  # [D_EVENTS, req, events]; req 0: no ack
D_HELLO = 63  # [D_HELLO, req] -> [id, path, committed_mailbox_seq]
D_RESULT = 64  # [D_RESULT, req, id] -> wire reason, once the process has finished
D_CANCEL = 65  # [D_CANCEL, req]: the caller gave up waiting on D_RESULT req
D_FINISH = 66  # [D_FINISH, req, events, reason]
D_SLEEP = 67  # [D_SLEEP, req, events, wake_at]: the process ends; start it again at wake_at
D_IDLE = 68  # [D_IDLE]: waiting for a message (a kill now is no crash of its code)
D_WHEREIS = 69  # [D_WHEREIS, req, id] -> [pid_id, os_pid] | None
D_MSG = 70  # central -> process: [D_MSG, seq, body]
D_FOLLOW = 71  # [D_FOLLOW, req, id, resume] -> ["running", pid_id, os_pid] | ["idle"] | ["done", reason]
D_STOP = 72  # [D_STOP, req, id, why] -> the final wire reason, once committed
