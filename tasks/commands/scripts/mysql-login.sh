#!/bin/sh
# Can user $1 log in to MySQL over TCP (as the tracker does) with the password on stdin?
# Exit 0 yes, 3 refused (access denied), 1 another error (printed).
IFS= read -r pw || exit 2
if err=$(MYSQL_PWD=$pw mysql -u"$1" -h127.0.0.1 -N -B -e 'SELECT 1' 2>&1 >/dev/null); then exit 0; fi
case $err in
  *"Access denied"*) exit 3 ;;
  *) printf '%s\n' "$err" >&2; exit 1 ;;
esac
