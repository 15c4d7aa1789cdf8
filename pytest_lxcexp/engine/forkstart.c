/*
 * forkstart: a fork server that starts LXC containers through liblxc's API, what
 * `lxc-start -d -C -p PIDFILE -o LOG -l WARN -n NAME -P LXCPATH` does, without an exec per
 * container.
 *
 *     forkstart LXCPATH    <"NAME<TAB>LOGFILE<TAB>PIDFILE" on stdin, one per line>
 *
 * For each line it forks a child that starts the container (liblxc forks the container's
 * monitor from that child, daemonized, and returns once the container runs), waits for
 * the child and prints one line: its exit status ("0": running), or "E<errno>" when the
 * child could not be forked.
 *
 * Why (docs/design.md, "The fork server"): each container's monitor is a fork of whatever
 * called liblxc, and keeps the pages its parent dirtied. Forked from a short-lived
 * lxc-start, every one of them owns a private copy of the loader's relocations and of the
 * libraries' data; forked from this long-lived process, they share them. And no exec
 * means no dynamic loading per container.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lxc/lxccontainer.h>

/* The child's exit statuses that are not liblxc's error_num. */
enum { START_FAILED = 1, LOG_FAILED = 2, NO_CONTAINER = 3, NO_CONFIG = 4, NO_MEMORY = 5 };

static int start_one(const char *lxcpath, const char *name, const char *log_file, const char *pid_file)
{
	struct lxc_log log = {
		.name = name, .lxcpath = lxcpath, .file = log_file, .level = "WARN", .prefix = "lxc-start", .quiet = true,
	};
	struct lxc_container *container;
	int status = 0;

	if (lxc_log_init(&log))
		return LOG_FAILED;
	container = lxc_container_new(name, lxcpath);
	if (!container)
		return NO_CONTAINER;
	if (container->is_running(container))
		goto out; /* as lxc-start: already running is success */
	if (!container->lxc_conf) {
		status = NO_CONFIG;
		goto out;
	}
	container->pidfile = strdup(pid_file); /* freed by lxc_container_put */
	if (!container->pidfile) {
		status = NO_MEMORY;
		goto out;
	}
	container->want_close_all_fds(container, true); /* daemonizing is liblxc's default */
	if (!container->start(container, 0, NULL)) {
		/* error_num is liblxc's; an exit status keeps its low byte, so keep it non-zero. */
		status = container->error_num & 0xff ? container->error_num & 0xff : START_FAILED;
	}
out:
	lxc_container_put(container);
	return status;
}

/* The child: nothing of the server's (its pipes to the starter) may reach the container. */
static void detach_from_server(void)
{
	int null = open("/dev/null", O_RDWR);

	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
	}
	closefrom(3);
}

int main(int argc, char *argv[])
{
	char *line = NULL;
	size_t capacity = 0;
	ssize_t length;

	if (argc != 2) {
		fprintf(stderr, "usage: %s LXCPATH < NAME<TAB>LOGFILE<TAB>PIDFILE lines\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN); /* a starter that went away: the write fails, the loop ends at EOF */
	while ((length = getline(&line, &capacity, stdin)) > 0) {
		char *name, *log_file, *pid_file, *rest = line;
		int status;
		pid_t child;

		if (line[length - 1] == '\n')
			line[length - 1] = '\0';
		name = strsep(&rest, "\t");
		log_file = strsep(&rest, "\t");
		pid_file = strsep(&rest, "\t");
		if (!name || !*name || !log_file || !pid_file || rest) {
			printf("E%d\n", EINVAL);
			fflush(stdout);
			continue;
		}
		child = fork();
		if (child < 0) {
			printf("E%d\n", errno);
			fflush(stdout);
			continue;
		}
		if (child == 0) {
			detach_from_server();
			_exit(start_one(argv[1], name, log_file, pid_file));
		}
		while (waitpid(child, &status, 0) < 0) {
			if (errno != EINTR) {
				status = -1;
				break;
			}
		}
		if (status == -1)
			printf("E%d\n", ECHILD);
		else
			printf("%d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
		if (fflush(stdout) != 0)
			break;
	}
	free(line);
	return 0;
}
