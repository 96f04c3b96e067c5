#!/usr/bin/env bash
# Installs the Debian packages the local stack needs, in one apt transaction, only when missing:
# MariaDB and Redis (services), the MySQL client headers (to build mysqlclient), Java 17 (JDK) and Maven
# (to resolve and run the Kafka broker jars), and Chromium with its WebDriver (the browser tests).
set -euo pipefail

need=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server mariadb-client)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
pkg-config --exists mysqlclient 2>/dev/null || need+=(default-libmysqlclient-dev pkg-config)
command -v gcc >/dev/null 2>&1 || need+=(build-essential)
# javac too: the Kafka readiness check is compiled from source at first start.
command -v javac >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
# tests/browser/ open the pages in a real browser: Selenium drives Chromium through chromedriver.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)

if [ ${#need[@]} -eq 0 ]; then
  echo "[system] all Debian packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "[system] ERROR: missing packages (${need[*]}); run this script as root or install them with apt-get" >&2
  exit 1
fi
echo "[system] installing: ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "[system] done"
