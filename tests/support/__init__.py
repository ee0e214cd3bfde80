"""Helpers the tests share (traffic as real SDKs send it, ...)."""
