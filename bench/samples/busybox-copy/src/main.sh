#!/bin/sh
echo "hello from the busybox-copy sample"
