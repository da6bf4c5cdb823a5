"""The write path: bulk delivery with classification and dead letters (``bulk``), the webhook receiver
(``serve``)."""
