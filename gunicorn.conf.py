"""gunicorn settings for `make run` / `lbp serve`."""
import multiprocessing
import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY", max(2, multiprocessing.cpu_count())))
worker_class = os.environ.get("WORKER_CLASS", "gthread")
threads = int(os.environ.get("THREADS", "4"))
timeout = 600  # large region bundles
# The application logs each request by route pattern; gunicorn's access log would carry ids and queries.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
