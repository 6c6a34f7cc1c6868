#!/bin/sh
exec hello --greeting="hello from the debian-apt sample"
