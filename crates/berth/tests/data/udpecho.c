/* A UDP echo server for the publishing test (busybox has no UDP server): udpecho PORT. */
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(atoi(argv[1]));
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) return 1;
    char buf[2048];
    for (;;) {
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        if (n > 0) sendto(s, buf, n, 0, (struct sockaddr *)&from, fl);
    }
}
