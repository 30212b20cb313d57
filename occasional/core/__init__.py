"""The core runtime (internal): central services, forkserver, process context,
mailbox, matching, reasons. The public face is :mod:`occasional`."""
