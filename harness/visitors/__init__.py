"""Admitting the public: who a request comes from (`client_keys`), one comparison each (`fair_share`), how long the
wait is (`wait_estimate`), and the images handed to a page (`page_images`)."""
