/* peakrss CMD ARGS...: runs CMD (vfork + exec from this small process, so the child's peak
 * RSS is not inflated by a big parent such as Python) and prints on stderr's last line
 * "peakrss KB USER_S SYS_S EXIT". Used by benches/compare.py. */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) { fputs("usage: peakrss CMD [ARGS...]\n", stderr); return 2; }
    pid_t pid = vfork();
    if (pid < 0) { perror("vfork"); return 2; }
    if (pid == 0) { execvp(argv[1], argv + 1); _exit(127); }
    int status; struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) { perror("wait4"); return 2; }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    fprintf(stderr, "\npeakrss %ld %ld.%06ld %ld.%06ld %d\n", ru.ru_maxrss,
            (long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec,
            (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec, code);
    return code;
}
