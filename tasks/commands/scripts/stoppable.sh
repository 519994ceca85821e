#!/bin/sh
# Run "$@" so that closing the SSH channel stops it (tasks/runner/executor.py `stream`).
# Without a terminal, closing a channel does not stop the remote command (it would linger
# until its next write). So the command runs beside a watcher of the channel's stdin: any
# byte or EOF there (the tool closes it on Ctrl-C) stops the command. It runs in a session
# of its own and the whole group is signalled: the docker CLI ignores SIGTERM while a
# plugin such as compose runs, and a background job ignores SIGINT. (A background job's
# stdin is /dev/null, hence the copy of the channel's on fd 3.)
exec 3<&0
setsid "$@" &
pid=$!
( head -c 1 <&3; kill -TERM "-$pid" || kill -TERM "$pid" ) >/dev/null 2>&1 &
watcher=$!
exec 3<&-
wait "$pid"
status=$?
kill "$watcher" 2>/dev/null
exit "$status"
