#!/usr/bin/env bash
# The Maven side of the end-to-end tests: a real mvn and gradle (and the JDK they
# need), and Debian's packaged build plugins, which the tests serve as the
# upstream repository (/usr/share/maven-repo) so no Maven Central is needed.
set -euo pipefail
packages=(maven libmaven-compiler-plugin-java libmaven-resources-plugin-java junit5 gradle)
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi
mvn -v
gradle --version | grep '^Gradle'
