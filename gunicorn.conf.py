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
# The master imports app.wsgi (create_app: knowledge loaded and compiled, CDS services built) before it
# forks any worker, so every worker, including one started after a crash, a kill or a SIGHUP, is ready
# when it takes its first request: none answers from half-loaded knowledge, and the first request is as
# fast as a warm one. SIGHUP forks fresh workers from the loaded application (a code change needs a full
# restart); knowledge written later reaches every worker through the knowledge epoch, as before.
preload_app = True


def post_fork(server, worker):
    """Database connections opened while the master loaded are not shared with a worker: it opens its own."""
    import app.wsgi

    app.wsgi.app.extensions["lbp"].store.engine.dispose(close=False)


# gunicorn 27's control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl), shared by every
# instance on the machine; the server does not use it.
control_socket_disable = True
