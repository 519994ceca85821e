#!/bin/sh
# Run SQL as MySQL's root inside the database container. Everything secret arrives on
# stdin, never in argv: line 1 the root password to try first, line 2 the one to try if
# that is refused (may be empty), then the SQL. Exit 3 when root is refused with both.
IFS= read -r first || exit 2
IFS= read -r second || true
sql=$(cat)
for pw in "$first" "$second"; do
  [ -n "$pw" ] || continue
  if err=$(printf '%s\n' "$sql" | MYSQL_PWD=$pw mysql -uroot --default-character-set=utf8mb4 -N -B 2>&1 >/dev/null); then
    exit 0
  fi
  case $err in
    *"Access denied"*) ;;
    *) printf '%s\n' "$err" >&2; exit 1 ;;
  esac
done
echo "MySQL refused root with both passwords given" >&2
exit 3
